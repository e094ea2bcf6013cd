# Evaluation of each training job on its test set (metrics.json in the evaluation contract, the
# predicted label maps for the qualitative figures, pixel features for t-SNE).


rule evaluate:
    input:
        config=config_file("{run_id}"),
        trained=train_done("{run_id}"),
    output:
        metrics_file("{run_id}"),
    log:
        log_file("evaluate", "{run_id}"),
    benchmark:
        benchmark_file("evaluate", "{run_id}")
    conda:
        CONDA_ENV
    threads: EVAL_RESOURCES["threads"]
    resources:
        gpu=min(EVAL_RESOURCES["gpu"], 1),
        mem_mb=EVAL_RESOURCES["mem_mb"],
        runtime=EVAL_RESOURCES["runtime"],
    message:
        "Evaluating {wildcards.run_id} (preset {PRESET})"
    shell:
        "export OMP_NUM_THREADS={threads}; "
        "sartm evaluate --config {input.config:q} --quiet > {log} 2>&1"
