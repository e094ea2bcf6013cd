# The CLIP text-teacher cache: one file per data source, built only when some job of that
# dataset distils language (loss.w3 > 0). It reruns when the text settings change.


rule text_cache:
    input:
        # custom datasets take their class names from their meta.json
        lambda wildcards: (
            [str(paths.processed_dir(wildcards.cache, DATA_ROOT))]
            if wildcards.cache.startswith("custom-")
            else []
        ),
    output:
        paths.text_cache("{cache}", DATA_ROOT),
    log:
        log_file("text", "{cache}"),
    conda:
        CONDA_ENV
    params:
        settings=lambda wildcards: text_settings(wildcards.cache),
        preset=PRESET,
    message:
        "Encoding the class names of {wildcards.cache} with the CLIP text encoder"
    shell:
        "sartm embed {wildcards.cache} --out {output} --preset {params.preset}"
        " {params.settings:q} > {log} 2>&1"
