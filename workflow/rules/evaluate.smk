# Evaluation of each training job on its test set (metrics.json in the evaluation contract, the
# predicted label maps for the qualitative figures, pixel features for t-SNE).


rule evaluate:
    input:
        config=str(PLAN.config_file("{run_id}")),
        trained=str(PLAN.train_done("{run_id}")),
    output:
        str(PLAN.metrics_file("{run_id}")),
    log:
        str(PLAN.log_file("evaluate", "{run_id}")),
    benchmark:
        str(PLAN.benchmark_file("evaluate", "{run_id}"))
    conda:
        CONDA_ENV
    threads: EVAL_RESOURCES["threads"]
    resources:
        gpu=min(EVAL_RESOURCES["gpu"], 1),
        mem_mb=EVAL_RESOURCES["mem_mb"],
        runtime=EVAL_RESOURCES["runtime"],
    params:
        command=lambda wildcards: PLAN.evaluate_command(wildcards.run_id),
    message:
        "Evaluating {wildcards.run_id} (preset {PRESET})"
    shell:
        "export OMP_NUM_THREADS={threads}; {params.command} > {log} 2>&1"
