# The offline SAM2 stand-in: a preset whose model.checkpoint is its pretrain.out (the demo, ci)
# gets the demo-size SAM2 pretrained on synthetic RGB scenes once, before any training job.
# Presets with real weights (paper) never run this rule.


rule pretrain:
    output:
        checkpoint=PRETRAIN["out"],
        sha256=PRETRAIN["out"] + ".sha256",
        summary=PRETRAIN["out"] + ".json",
    log:
        log_file("pretrain", "stand-in"),
    conda:
        CONDA_ENV
    threads: PRETRAIN["threads"]
    params:
        preset=PRESET,
        settings=json.dumps(PRETRAIN, sort_keys=True),  # a changed setting remakes it
    message:
        "Pretraining the SYNTHETIC SAM2 stand-in {output.checkpoint}"
    shell:
        "sartm pretrain --preset {params.preset} --out {output.checkpoint:q} --force --quiet"
        " > {log} 2>&1"
