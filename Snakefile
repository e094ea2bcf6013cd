# SARTM: the reproducible pipeline, as an index of rules (workflow/rules/*.smk).
#
#   sartm pipeline demo --cores 2              the demo (synthetic data, tiny model) + report
#   snakemake --workflow-profile workflow/profiles/default --cores 2 [TARGET]
#       TARGET: all (default), all_tables, all_figures, report, or one file such as
#       results/demo/tables/t4.md (only the runs Table IV needs)
#   ... --config preset=paper                  the paper's experiments on the real datasets
#   snakemake --report results/demo/report.zip a browsable report of every table and figure
#
# Everything a preset makes is under results/<preset>/ (sartm.paths): presets never touch each
# other's files.
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
        [str(p) for t in TABLES for p in PLAN.table_files(t)],
        [str(p) for f in FIGURES for p in PLAN.figure_files(f)],
        str(PLAN.summary_file),
        str(PLAN.summary_html),
        str(PLAN.scores_file),


rule all_tables:
    input:
        [str(p) for t in TABLES for p in PLAN.table_files(t)],


rule all_figures:
    input:
        [str(p) for f in FIGURES for p in PLAN.figure_files(f)],


# Everything `snakemake --report results/<preset>/report.zip` shows (sartm pipeline demo does both).
rule report:
    input:
        rules.all.input,


# DVC and Snakemake share one state: when dvc.yaml is the one of this preset, what this run made
# is recorded in dvc.lock, so `dvc status` is up to date and `dvc repro` reruns nothing.
onsuccess:
    if (
        Path("dvc.yaml").is_file()
        and Path(".dvc").is_dir()
        and PRESET == DVC_PRESET
    ):
        shell("sartm pipeline dvc-lock")
