"""MLflow store initialisation, logging, and retries on a locked SQLite store (concurrent
`sartm train` writers: tests/engine/test_tracking_writers.py)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

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


def test_log_history_logs_each_step_once(tmp_path):
    """A resume replays the whole history: only the (metric, step) pairs the run lacks go in."""
    cfg = _cfg(tmp_path)
    run = tracking.start_run(cfg, stage="train", log_config=False)
    rows = [{"epoch": e, "loss": 1 / e, "miou": e / 10} for e in (1, 2, 3)]
    rows[2]["miou"] = float("nan")  # not logged, like log_metrics
    run.log_metrics({"loss": 1.0, "miou": 0.1}, step=1)  # logged before a kill
    run.log_metrics({"loss": 0.5}, step=2)  # a row half logged
    assert run.log_history(rows) == 2  # miou at 2, loss at 3
    assert run.log_history(rows) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    logged = {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, key))
        for key in ("loss", "miou")
    }
    assert logged == {
        "loss": [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))],
        "miou": [(1, 0.1), (2, 0.2)],
    }


def test_retry_on_a_real_database_is_locked(tmp_path):
    """Another connection holds the database's write lock: the real error (SQLAlchemy's
    OperationalError over sqlite3's, after a 0.1 s busy timeout) is retried until it is released;
    another real error is raised at once."""
    db = tmp_path / "store.db"
    engine = sa.create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.1})
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE metrics (value REAL)"))
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.6, holder.execute, ["ROLLBACK"])
    release.start()
    errors = []

    def write(sql: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        except Exception as exc:
            errors.append(exc)
            raise

    tracking.with_retry(write, "INSERT INTO metrics VALUES (1.5)")
    release.join()
    assert errors, "the lock was released before the first attempt"
    for error in errors:
        assert isinstance(error, sa.exc.OperationalError)
        assert isinstance(error.orig, sqlite3.OperationalError)
        assert str(error.orig) == "database is locked"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT value FROM metrics")).scalar_one() == 1.5

    errors.clear()
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        tracking.with_retry(write, "INSERT INTO nowhere VALUES (1)")
    assert len(errors) == 1  # not retried
    holder.close()
    engine.dispose()
