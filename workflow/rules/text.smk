# The CLIP text-teacher cache: one file per data source, built only when some job of that
# dataset distils language (loss.w3 > 0). It reruns when the text settings change.


rule text_cache:
    input:
        lambda wildcards: PLAN.text_inputs(wildcards.cache),
    output:
        str(paths.text_cache("{cache}", DATA_ROOT)),
    log:
        str(PLAN.log_file("text", "{cache}")),
    conda:
        CONDA_ENV
    params:
        command=lambda wildcards: PLAN.text_command(wildcards.cache),
    message:
        "Encoding the class names of {wildcards.cache} with the CLIP text encoder"
    shell:
        "{params.command} > {log} 2>&1"
