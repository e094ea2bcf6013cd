# Training: one job per distinct canonical configuration and seed (runs of the run list whose
# configuration is identical share one job, sartm.config.run_aliases). Each job gets its resolved
# configuration as a file written from params.yaml; that file is rewritten - and the run retrained -
# exactly when the run's training identity changes (execution-only keys such as data.num_workers
# or the tracking server do not count; sartm.config.EXECUTION_ONLY). Training and evaluation are
# separate jobs: evaluation can be redone without retraining, and each has its own benchmark.
# Only train_metrics.json (written last) is declared: last.pt and history.csv stay across a
# rerun, so an interrupted job resumes where it stopped; a checkpoint of a superseded
# configuration is started over (`sartm train --restart-if-changed` decides).


rule run_config:
    output:
        str(PLAN.config_file("{run_id}")),
    log:
        str(PLAN.log_file("configs", "{run_id}")),
    localrule: True
    conda:
        CONDA_ENV
    params:
        identity=lambda wildcards: PLAN.run_identity(wildcards.run_id),
        preset=PRESET,
    message:
        "Resolving the configuration of {wildcards.run_id} (preset {PRESET})"
    shell:
        "sartm pipeline config {wildcards.run_id} --preset {params.preset} --out {output:q}"
        " > {log} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        str(PLAN.train_done("{run_id}")),
    log:
        str(PLAN.log_file("train", "{run_id}")),
    benchmark:
        str(PLAN.benchmark_file("train", "{run_id}"))
    conda:
        CONDA_ENV
    threads: TRAIN_RESOURCES["threads"]
    resources:
        gpu=TRAIN_RESOURCES["gpu"],
        mem_mb=TRAIN_RESOURCES["mem_mb"],
        runtime=TRAIN_RESOURCES["runtime"],
    params:
        command=lambda wildcards, resources: PLAN.train_command(
            wildcards.run_id, resources.gpu
        ),
    message:
        "Training {wildcards.run_id} (preset {PRESET})"
    shell:
        # resumes an interrupted run, starts a superseded one over; more than one GPU trains
        # under torchrun (DDP)
        "export OMP_NUM_THREADS={threads}; {params.command} > {log} 2>&1"
