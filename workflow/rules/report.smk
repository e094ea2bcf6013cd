# Tables, figures and the summary read only metrics.json files (and, for the timing table,
# Snakemake's benchmark files); each table or figure is its own job, so `snakemake
# results/demo/tables/t4.md` trains and evaluates only what Table IV needs. Every table (as an HTML
# page, so that the report shows it) and figure goes into the preset's report
# (`snakemake --report results/<preset>/report.zip`)
# with its caption (workflow/report/), filed under the paper's table or figure number.

from sartm.report import tables as sartm_tables

# What every caption says of the preset: real or SYNTHETIC data, and which SAM2 encoder.
PRESET_NOTE = sartm_tables.preset_note(config, PRESET)


rule table:
    input:
        unpack(table_inputs),
    output:
        md=str(paths.tables_dir(RESULTS) / "{table}.md"),
        csv=report(
            str(paths.tables_dir(RESULTS) / "{table}.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory=lambda wildcards: sartm_tables.report_section(wildcards[0]),
            labels={"table": "{table}", "format": "CSV"},
        ),
        tex=str(paths.tables_dir(RESULTS) / "{table}.tex"),
        html=report(
            str(paths.tables_dir(RESULTS) / "{table}.html"),
            caption="../report/table.rst",
            category="Tables",
            subcategory=lambda wildcards: sartm_tables.report_section(wildcards[0]),
            labels={"table": "{table}", "format": "HTML"},
        ),
    log:
        str(PLAN.log_file("report", "table-{table}")),
    conda:
        CONDA_ENV
    params:
        runs=lambda wildcards: PLAN.item_options(wildcards.table),
        out=lambda wildcards, output: Path(output.md).parent,
        results=RESULTS,
        preset_note=PRESET_NOTE,
    message:
        "Writing table {wildcards.table}"
    shell:
        "sartm report tables {wildcards.table} {params.runs:q} --results {params.results:q}"
        " --out {params.out:q} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            str(paths.figures_dir(RESULTS) / "{figure}.png"),
            caption="../report/figure.rst",
            category="Figures",
            subcategory=lambda wildcards: sartm_tables.report_section(wildcards[0]),
            labels={"figure": "{figure}"},
        ),
        pdf=str(paths.figures_dir(RESULTS) / "{figure}.pdf"),
    log:
        str(PLAN.log_file("report", "figure-{figure}")),
    conda:
        CONDA_ENV
    params:
        runs=lambda wildcards: PLAN.item_options(wildcards.figure),
        out=lambda wildcards, output: Path(output.png).parent,
        results=RESULTS,
        data=DATA_ROOT,
        preset_note=PRESET_NOTE,
    message:
        "Drawing figure {wildcards.figure}"
    shell:
        "MPLBACKEND=Agg sartm report figures {wildcards.figure} {params.runs:q}"
        " --results {params.results:q} --data {params.data:q} --out {params.out:q} > {log} 2>&1"


rule summary:
    input:
        PLAN.item_metrics(PLAN.summary_jobs),
    output:
        md=str(PLAN.summary_file),
        # the HTML page is what the report shows inside the page
        html=report(
            str(PLAN.summary_html), caption="../report/summary.rst", category="Summary"
        ),
        scores=str(PLAN.scores_file),
    log:
        str(PLAN.log_file("report", "summary")),
    conda:
        CONDA_ENV
    params:
        runs=PLAN.summary_options,
        results=RESULTS,
        preset_note=PRESET_NOTE,
    message:
        "Writing the paper-vs-reproduction summary"
    shell:
        "sartm report summary {params.runs:q} --results {params.results:q} --out {output.md:q}"
        " > {log} 2>&1"
