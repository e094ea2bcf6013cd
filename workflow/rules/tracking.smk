# The MLflow store is created once, before any training job: several processes creating a fresh
# SQLite store at once corrupt it. Training jobs read the stamp as ancient(): logging into the
# store never makes finished runs look outdated.


rule tracking:
    output:
        stamp_file("tracking.txt"),
    log:
        log_file("tracking", "init"),
    conda:
        CONDA_ENV
    params:
        settings=json.dumps(BASE["mfnet"].sections()["tracking"], sort_keys=True),
        preset=PRESET,
    message:
        "Creating the MLflow tracking store and experiment"
    shell:
        "sartm tracking init --preset {params.preset} > {output} 2> {log}"
