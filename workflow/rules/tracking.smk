# The MLflow store is created once, before any training job: several processes creating a fresh
# SQLite store at once corrupt it. Training jobs read the stamp as ancient(): logging into the
# store never makes finished runs look outdated.


rule tracking:
    output:
        str(PLAN.stamp_file("tracking.txt")),
    log:
        str(PLAN.log_file("tracking", "init")),
    conda:
        CONDA_ENV
    params:
        # a function: the experiment name holds "{preset}", which is no wildcard
        settings=lambda wildcards: json.dumps(
            PLAN.base["mfnet"].sections()["tracking"], sort_keys=True
        ),
        command=PLAN.tracking_command,
    message:
        "Creating the MLflow tracking store and experiment"
    shell:
        "{params.command} > {output} 2> {log}"
