# The offline SAM2 stand-in: a preset whose model.checkpoint is its pretrain.out (the demo, ci)
# gets the demo-size SAM2 pretrained on synthetic RGB scenes once, before any training job.
# Presets with real weights (paper) never run this rule.


rule pretrain:
    output:
        checkpoint=PLAN.pretrain["out"],
        sha256=PLAN.pretrain["out"] + ".sha256",
        summary=PLAN.pretrain["out"] + ".json",
    log:
        str(PLAN.log_file("pretrain", "stand-in")),
    conda:
        CONDA_ENV
    threads: PLAN.pretrain["threads"]
    params:
        command=PLAN.pretrain_command,
        settings=json.dumps(PLAN.pretrain, sort_keys=True),  # a changed setting remakes it
    message:
        "Pretraining the SYNTHETIC SAM2 stand-in {output.checkpoint}"
    shell:
        "{params.command} > {log} 2>&1"
