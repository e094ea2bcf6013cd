"""MLflow store initialisation, logging, and concurrent writers on a fresh SQLite store."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sartm import config as cfgmod
from sartm import tracking


def _cfg(tmp_path, run="full", dataset="pst900"):
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    return cfgmod.resolve(
        params,
        dataset=dataset,
        run=run,
        preset="ci",
        overrides=[
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracking.artifact_root={tmp_path / 'artifacts'}",
        ],
    )


def test_store_init_run_logging_and_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    cfg = _cfg(tmp_path)
    experiment_id = tracking.init_store(cfg)
    assert (tmp_path / "mlflow.db").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == cfg.tracking.experiment
    assert experiment.artifact_location == (tmp_path / "artifacts").resolve().as_uri()

    run = tracking.start_run(cfg, stage="train", tags={"git_commit": "abc"})
    run.log_metrics({"loss": 1.5, "miou": 0.25, "bad": float("nan")}, step=1)
    run.log_metrics({"loss": 1.0, "miou": 0.5}, step=2)
    (tmp_path / "note.txt").write_text("hello")
    run.log_artifact(tmp_path / "note.txt", "files")
    run.end()

    stored = client.get_run(run.run_id)
    assert stored.info.run_name == "pst900/full" and stored.info.status == "FINISHED"
    assert stored.data.params["train.epochs"] == str(cfg.train.epochs)
    assert stored.data.params["model.backbone"] == cfg.model.backbone
    assert stored.data.tags["dataset"] == "synth-pst900" and stored.data.tags["synthetic"] == "true"
    assert stored.data.tags["git_commit"] == "abc" and stored.data.tags["stage"] == "train"
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [1.5, 1.0]
    assert "bad" not in stored.data.metrics  # non-finite values are not logged
    assert (tmp_path / "artifacts" / run.run_id / "artifacts" / "files" / "note.txt").is_file()

    # Reopening the same run id continues it instead of creating a new one.
    again = tracking.start_run(cfg, stage="train", resume_run_id=run.run_id)
    assert again.run_id == run.run_id
    assert client.get_run(run.run_id).info.status == "RUNNING"

    monkeypatch.setenv(tracking.ENV_URI, "sqlite:///elsewhere.db")
    assert tracking.tracking_uri(cfg) == "sqlite:///elsewhere.db"


def test_retry_on_database_locked():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.with_retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        tracking.with_retry(lambda: (_ for _ in ()).throw(ValueError("other")))


WORKER = textwrap.dedent(
    """
    import sys
    from sartm import config as cfgmod, tracking
    tmp, index = sys.argv[1], int(sys.argv[2])
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    cfg = cfgmod.resolve(params, dataset="mfnet", run=f"w1-0.05", preset="ci", overrides=[
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_root={tmp}/artifacts"])
    run = tracking.start_run(cfg, stage="train", tags={"worker": index})
    for epoch in range(1, 6):
        run.log_metrics({"loss": index + epoch / 10, "miou": epoch / 10}, step=epoch)
    run.end()
    """
)


@pytest.mark.slow
def test_eight_concurrent_processes_on_a_fresh_store(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(i)], stderr=subprocess.PIPE
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=240)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errors)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["sartm"]
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=100)
    assert sorted(int(r.data.tags["worker"]) for r in runs) == list(range(8))
    for run in runs:
        index = int(run.data.tags["worker"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [
            (e, pytest.approx(index + e / 10)) for e in range(1, 6)
        ]
        assert len(client.get_metric_history(run.info.run_id, "miou")) == 5
