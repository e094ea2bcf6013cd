"""8 `sartm train` processes started together on a fresh MLflow store: nothing is lost.

They race to create the store (its schema migrations), the experiment and their runs, then write
params, metrics, tags and artifacts at the same time; each needs its run complete and FINISHED.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import sartm
from sartm.config import save_config
from sartm.engine import run_checkpoint as ck

WRITERS = 8


@pytest.mark.slow
def test_eight_sartm_train_processes_on_a_fresh_store(cfg_factory, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config_file = tmp_path / "config.yaml"
    save_config(
        cfg_factory("train.epochs=1", "train.similarity_epochs=[]", f"tracking.uri={uri}"),
        config_file,
    )
    # The subprocesses import the sartm under test, not whichever one the venv has installed.
    path = [os.path.dirname(os.path.dirname(sartm.__file__)), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env.pop("MLFLOW_TRACKING_URI", None)
    workdirs = [tmp_path / f"w{i}" for i in range(WRITERS)]
    procs = []
    for workdir in workdirs:  # one results folder each, one store for all
        workdir.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sartm", "train", "--config", str(config_file), "--quiet"],
                cwd=workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        )
    errors = [p.communicate(timeout=300)[1].decode()[-2000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errors)

    client = MlflowClient(tracking_uri=uri)
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["sartm-ci"]
    runs = {r.info.run_id: r for r in client.search_runs([e.experiment_id for e in experiments])}
    assert len(runs) == WRITERS
    for workdir in workdirs:
        last = ck.load_checkpoint(
            workdir / "results" / "ci" / "train" / "pst900" / "no-language" / "last.pt"
        )
        run = runs.pop(last["mlflow_run_id"])  # each process's own run, once
        assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "1"
        assert run.data.tags["run_id_path"] == "pst900/no-language"
        (row,) = last["history"]
        assert "step" not in run.data.metrics  # an axis, not a metric
        for key in set(row) - {"epoch", "step"}:
            logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            assert logged == [(1, float(row[key]))], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "history.csv", "train_metrics.json"} <= artifacts
    assert not runs
