# Data: the preset maps each logical dataset (mfnet, pst900, fmb) to a data source. Synthetic
# stand-ins (synth-*) are generated; real datasets are downloaded (or taken from archives already
# in data/archives/<dataset>/) and prepared into the common layout; a dataset of your own
# (params.yaml `datasets:`) is prepared from its raw folder. Any other custom-* source must be
# prepared by hand (`sartm data prepare custom ...`).


rule synth:
    output:
        directory(str(paths.processed_dir("{source}", DATA_ROOT))),
    log:
        str(PLAN.log_file("data", "{source}")),
    conda:
        CONDA_ENV
    params:
        command=lambda wildcards: PLAN.synth_command(wildcards.source),
    message:
        "Generating the SYNTHETIC stand-in {wildcards.source}"
    shell:
        "{params.command} > {log} 2>&1"


rule download:
    output:
        directory(str(paths.raw_dir("{dataset}", DATA_ROOT))),
    log:
        str(PLAN.log_file("data", "download-{dataset}")),
    conda:
        CONDA_ENV
    params:
        command=lambda wildcards: PLAN.download_command(wildcards.dataset),
    message:
        "Downloading, verifying and extracting {wildcards.dataset}"
    shell:
        "{params.command} > {log} 2>&1"


rule prepare:
    input:
        str(paths.raw_dir("{dataset}", DATA_ROOT)),
    output:
        directory(str(paths.processed_dir("{dataset}", DATA_ROOT))),
    log:
        str(PLAN.log_file("data", "prepare-{dataset}")),
    conda:
        CONDA_ENV
    params:
        command=lambda wildcards: PLAN.prepare_command(wildcards.dataset),
    message:
        "Converting {wildcards.dataset} to the common layout"
    shell:
        "{params.command} > {log} 2>&1"


# A dataset of your own (params.yaml `datasets:`), prepared from its raw folder and class file.
rule prepare_own:
    input:
        lambda wildcards: PLAN.own_inputs(f"custom-{wildcards.name}"),
    output:
        directory(str(paths.processed_dir("custom-{name}", DATA_ROOT))),
    log:
        str(PLAN.log_file("data", "prepare-custom-{name}")),
    conda:
        CONDA_ENV
    params:
        command=lambda wildcards: PLAN.prepare_own_command(f"custom-{wildcards.name}"),
    message:
        "Converting your dataset custom-{wildcards.name} to the common layout"
    shell:
        "{params.command} > {log} 2>&1"
