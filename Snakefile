# SARTM: the reproducible pipeline, as an index of rules (workflow/rules/*.smk).
#
#   sartm pipeline demo --cores 2              the demo (synthetic data, tiny model) + report
#   snakemake --workflow-profile workflow/profiles/default --cores 2 [TARGET]
#       TARGET: all (default), all_tables, all_figures, report, or one file such as
#       results/tables/t4.md (only the runs Table IV needs)
#   ... --config preset=paper                  the paper's experiments on the real datasets
#   snakemake --report results/report.zip      a browsable report of every table and figure
#
# params.yaml is the one definition of the experiments; the preset maps the logical datasets to
# real data or synthetic stand-ins. dvc.yaml runs the same stages (sartm pipeline dvc-yaml).


from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.json")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    all_tables,
    all_figures,
    report,


rule all:
    default_target: True
    input:
        [table_files(t) for t in TABLES],
        [figure_files(f) for f in FIGURES],
        SUMMARY,


rule all_tables:
    input:
        [table_files(t) for t in TABLES],


rule all_figures:
    input:
        [figure_files(f) for f in FIGURES],


# Everything `snakemake --report results/report.zip` shows (sartm pipeline report does both).
rule report:
    input:
        rules.all.input,
