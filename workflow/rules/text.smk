# The CLIP text-teacher cache: one file per data source, built only when some job of that
# dataset distils language (loss.w3 > 0). It reruns when the text settings change.


rule text_cache:
    output:
        paths.text_cache("{cache}", DATA_ROOT),
    params:
        settings=lambda wildcards: text_settings(wildcards.cache),
    log:
        log_file("text", "{cache}"),
    message:
        "Encoding the class names of {wildcards.cache} with the CLIP text encoder"
    shell:
        "sartm embed {wildcards.cache} --out {output} --preset {PRESET}"
        " {params.settings:q} > {log} 2>&1"
