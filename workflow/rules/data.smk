# Data: the preset maps each logical dataset (mfnet, pst900, fmb) to a data source. Synthetic
# stand-ins (synth-*) are generated; real datasets are downloaded (or taken from archives already
# in data/archives/<dataset>/) and prepared into the common layout. A custom-* source must be
# prepared by hand (`sartm data prepare custom ...`): no rule makes it.


rule synth:
    output:
        directory(paths.processed_dir("{source}", DATA_ROOT)),
    log:
        log_file("data", "{source}"),
    conda:
        CONDA_ENV
    params:
        args=lambda wildcards: synth_args(wildcards.source),
        preset=PRESET,
    message:
        "Generating the SYNTHETIC stand-in {wildcards.source}"
    shell:
        "sartm data synth {wildcards.source} --out {output} --preset {params.preset}"
        " {params.args:q} > {log} 2>&1"


rule download:
    output:
        directory(paths.raw_dir("{dataset}", DATA_ROOT)),
    log:
        log_file("data", "download-{dataset}"),
    conda:
        CONDA_ENV
    params:
        root=lambda wildcards, output: Path(output[0]).parent.parent,
    message:
        "Downloading, verifying and extracting {wildcards.dataset}"
    shell:
        "sartm data download {wildcards.dataset} --root {params.root:q} --no-progress"
        " > {log} 2>&1"


rule prepare:
    input:
        paths.raw_dir("{dataset}", DATA_ROOT),
    output:
        directory(paths.processed_dir("{dataset}", DATA_ROOT)),
    log:
        log_file("data", "prepare-{dataset}"),
    conda:
        CONDA_ENV
    message:
        "Converting {wildcards.dataset} to the common layout"
    shell:
        "sartm data prepare {wildcards.dataset} --raw {input:q} --out {output:q} --force"
        " --no-progress > {log} 2>&1"
