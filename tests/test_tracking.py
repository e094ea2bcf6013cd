"""MLflow store initialisation, logging, and retries on a locked SQLite store (concurrent
`sartm train` writers: tests/engine/test_tracking_writers.py)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from sartm import config as cfgmod
from sartm import tracking


def _cfg(tmp_path, run="full", dataset="pst900", preset="ci", *overrides):
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    return cfgmod.resolve(
        params,
        dataset=dataset,
        run=run,
        preset=preset,
        overrides=[
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracking.artifact_root={tmp_path / 'artifacts'}",
            *overrides,
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
    assert experiment.name == tracking.experiment_name(cfg) == "sartm-ci"
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
    rows = [{"epoch": e, "step": 4 * e, "loss": 1 / e, "miou": e / 10} for e in (1, 2, 3)]
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
    assert client.get_metric_history(run.run_id, "step") == []  # the x axis is no metric


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


def test_one_experiment_per_preset(tmp_path, monkeypatch):
    """The demo's pst900/full and the ci preset's: one run each, in experiments of their own."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    demo, ci = _cfg(tmp_path, preset="demo"), _cfg(tmp_path, preset="ci")
    assert demo.run_id == ci.run_id == "pst900/full"
    runs = {}
    for cfg in (demo, ci):
        run = tracking.start_run(cfg, stage="train", log_config=False)
        run.log_metrics({"miou": 0.5 if cfg is demo else 0.25}, step=1)
        run.end()
        runs[cfg.preset] = run
    client = MlflowClient(tracking_uri=ci.tracking.uri)
    names = {e.name: e.experiment_id for e in client.search_experiments()}
    assert {"sartm-demo", "sartm-ci"} <= set(names) and "sartm" not in names
    for preset, run in runs.items():
        experiment_id = names[f"sartm-{preset}"]
        assert run.experiment_id == experiment_id
        (only,) = client.search_runs([experiment_id])  # the other preset's run is not here
        assert only.info.run_id == run.run_id and only.info.run_name == "pst900/full"
        assert only.data.tags["preset"] == preset
        assert only.data.metrics["miou"] == (0.5 if preset == "demo" else 0.25)
        note = client.get_experiment(experiment_id).tags["mlflow.note.content"]
        assert note.startswith(
            f"SARTM training and evaluation runs of this project, preset `{preset}`."
        )

    # A later ci run resumes in its own experiment; a demo run id is no run of the ci experiment.
    assert tracking.start_run(ci, stage="train", resume_run_id=runs["ci"].run_id).run_id == (
        runs["ci"].run_id
    )
    fresh = tracking.start_run(ci, stage="train", resume_run_id=runs["demo"].run_id)
    assert fresh.run_id != runs["demo"].run_id and fresh.experiment_id == names["sartm-ci"]
    assert len(client.search_runs([names["sartm-demo"]])) == 1

    # A name without the placeholder is one experiment for every preset, as written.
    plain = [
        _cfg(tmp_path, "full", "pst900", p, "tracking.experiment=shared") for p in ("demo", "ci")
    ]
    assert {tracking.experiment_name(c) for c in plain} == {"shared"}
    assert tracking.init_store(plain[0]) == tracking.init_store(plain[1])
    tags = client.get_experiment(tracking.init_store(plain[0])).tags
    assert tags["mlflow.note.content"].startswith(
        "SARTM training and evaluation runs of this project."
    )


@pytest.mark.parametrize(
    ("name", "shown"),
    [("sartm-{foo}", "{foo}"), ("{preset}-{run}", "{run}"), ("x-{preset!r}", "{preset!r}"),
     ("x-{}", "{}"), ("sartm-{preset", "")],
)  # fmt: skip
def test_an_unknown_placeholder_in_the_experiment_name_is_one_clear_error(tmp_path, name, shown):
    cfg = _cfg(tmp_path, "full", "pst900", "ci", f"tracking.experiment='{name}'")
    assert cfg.tracking.experiment == name
    for call in (tracking.experiment_name, tracking.init_store):
        with pytest.raises(tracking.TrackingError) as raised:
            call(cfg)
        message = str(raised.value)
        assert message.startswith(f"params.yaml: tracking.experiment {name!r}: ")
        assert shown in message and "{preset}" in message
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store is touched


def test_tracking_init_prints_the_presets_experiment(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sartm.cli import cli

    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    settings = ["--set", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                "--set", f"tracking.artifact_root={tmp_path / 'artifacts'}"]  # fmt: skip
    params = str(cfgmod.PROJECT_ROOT / "params.yaml")
    ids = {}
    for preset in ("demo", "paper"):
        result = CliRunner().invoke(
            cli, ["tracking", "init", "--params", params, "--preset", preset, *settings]
        )
        assert result.exit_code == 0, result.output
        (ids[preset],) = re.findall(
            rf"^experiment 'sartm-{preset}' \(id (\w+)\)$", result.output, re.M
        )
        assert f"/#/experiments/{ids[preset]}/runs?workflowType=machine_learning" in result.output
    assert ids["demo"] != ids["paper"]
    bad = CliRunner().invoke(
        cli,
        ["tracking", "init", "--params", params, *settings, "--set", "tracking.experiment=a-{b}"],
    )
    assert bad.exit_code != 0
    (line,) = bad.output.strip().splitlines()  # the one-line error of a SartmError
    assert line.endswith(
        "params.yaml: tracking.experiment 'a-{b}': unknown placeholder {b}; the only one is "
        '{preset} (e.g. "sartm-{preset}": one experiment per preset)'
    ), line


def test_experiment_tags_the_ui_reads(tmp_path):
    """Model-training kind, description, primary metric and the saved "sartm: results" view
    (the envelope MLflow's UI writes); a kind someone chose is kept, one the UI inferred is not."""
    from mlflow.tracking import MlflowClient

    cfg = _cfg(tmp_path)
    experiment_id = tracking.init_store(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"].startswith("SARTM training and evaluation runs")
    assert tags["mlflow.experiment.primaryMetric.name"] == "eval/test_miou"
    view = json.loads(tags["mlflow.sharedViewState.sartm-results"])
    assert view["name"] == "sartm: results" and isinstance(view["createdAt"], int)
    columns = json.loads(view["state"])["selectedColumns"]
    assert {"tags.`preset`", "metrics.`test_miou`", "metrics.`eval/test_miou`"} <= set(columns)

    def reinit(kind: str) -> str:
        client.set_experiment_tag(experiment_id, "mlflow.experimentKind", kind)
        tracking._initialised.clear()  # a new process
        tracking.init_store(cfg)
        return client.get_experiment(experiment_id).tags["mlflow.experimentKind"]

    assert reinit("genai_development_inferred") == "custom_model_development"
    assert reinit("genai_development") == "genai_development"  # chosen in the UI: kept


def test_runs_carry_source_tags_a_parent_and_a_description(tmp_path):
    from mlflow.tracking import MlflowClient

    from sartm.engine.provenance import git_state

    cfg = _cfg(tmp_path)
    train = tracking.start_run(cfg, stage="train", note="the training", log_config=False)
    child = tracking.start_run(
        cfg, stage="evaluate", parent_run_id=train.run_id, run_name="child", log_config=False
    )
    orphan = tracking.start_run(
        cfg, stage="evaluate", parent_run_id="0" * 32, log_config=False
    )  # a parent the store does not hold: a run of its own
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    tags = client.get_run(train.run_id).data.tags
    assert tags["mlflow.source.name"] == "sartm train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.note.content"] == "the training" and tags["mlflow.user"]
    if git_state()["git_commit"]:
        assert tags["mlflow.source.git.commit"] == git_state()["git_commit"]
    child_run = client.get_run(child.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == train.run_id == child.parent_run_id
    assert child_run.info.run_name == "child"
    assert child_run.data.tags["mlflow.source.name"] == "sartm evaluate"
    assert "mlflow.parentRunId" not in client.get_run(orphan.run_id).data.tags
    assert orphan.parent_run_id is None


def test_links_and_the_tables_that_read_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    cfg = _cfg(tmp_path)
    assert tracking.ui_url(cfg, "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert tracking.ui_url(cfg, "3", port=5011) == (
        "http://127.0.0.1:5011/#/experiments/3/runs"
        "?workflowType=machine_learning&viewStateShareKey=sartm-results"
    )
    assert tracking.run_line(cfg, {"experiment_id": "3", "run_id": "abc"}) == (
        "MLflow run abc: " + tracking.ui_url(cfg, "3", "abc")
    )
    assert tracking.run_line(cfg, {"experiment_id": None, "run_id": None}) is None
    monkeypatch.setenv(tracking.ENV_URI, "http://mlflow.lab:8080/")
    assert tracking.ui_url(cfg, "3", "abc").startswith("http://mlflow.lab:8080/#/experiments/3/")

    from sartm import runs

    readers = tracking.report_readers(cfg)  # pst900/full of the ci preset
    assert runs.item_spec("t1")[1]["title"] in readers  # Table I: PST900 per-class
    assert runs.item_spec("t5")[1]["title"] in readers  # Table V: one of its nine runs
    assert runs.item_spec("t2")[1]["title"] not in readers  # MFNet
    assert "Read by the report's tables:" in tracking.run_note(cfg, "a training job")
    adhoc = cfgmod.resolve(dataset="pst900", preset="ci")  # not a run of the run list
    assert tracking.report_readers(adhoc) == []
    assert "No report table of preset `ci` reads this run." in tracking.run_note(adhoc, "x")


def test_system_metrics_are_sampled_until_the_run_ends(tmp_path, monkeypatch):
    """What GPU runs switch on (MLflow's monitor; CPU, memory, disk, network, GPUs with pynvml)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    cfg = _cfg(tmp_path)
    run = tracking.start_run(cfg, stage="train", log_config=False)
    run.start_system_metrics()
    time.sleep(1.0)
    run.end()
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    logged = client.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in logged, sorted(logged)
    steps = len(client.get_metric_history(run.run_id, "system/cpu_utilization_percentage"))
    time.sleep(0.5)
    assert len(client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")) == steps


def test_a_run_id_with_a_dot_names_its_logged_model(tmp_path):
    """MLflow refuses `.` in a model name; run ids such as mfnet/w1-0.008 hold one."""
    cfg = _cfg(tmp_path, run="w1-0.008", dataset="mfnet")
    run = tracking.start_run(cfg, stage="train", log_config=False)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    model_id = run.log_model(checkpoint, name=cfg.run_id, tags={})
    run.end()
    model = run.client.get_logged_model(model_id)
    assert model.name == "mfnet-w1-0-008" and model.source_run_id == run.run_id


def test_the_ui_app_opens_in_model_training_mode_unless_the_user_chose(tmp_path, monkeypatch):
    """`sartm tracking ui`'s `mlflow.app` (sartm/tracking_ui_app.py): MLflow's own server, its
    index.html with one script ahead of the bundle (the browser test runs it), all else as is."""
    from importlib.metadata import entry_points

    import mlflow.server
    from mlflow.server import handlers

    from sartm import tracking_ui_app

    (registered,) = [e for e in entry_points(group="mlflow.app") if e.name == "sartm"]
    assert registered.load() is tracking_ui_app.create_app  # `pip install -e .` registers it
    cfg = _cfg(tmp_path)
    experiment_id = tracking.init_store(cfg)
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", cfg.tracking.uri)  # as `mlflow ui` sets them
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", tracking.artifact_location(cfg))
    monkeypatch.setattr(handlers, "_tracking_store", None)
    app = mlflow.server.app
    views = app.view_functions
    monkeypatch.setitem(views, tracking_ui_app.INDEX_VIEW, views[tracking_ui_app.INDEX_VIEW])
    pages = ["/", "/health", "/version", "/ajax-api/2.0/mlflow/experiments/search?max_results=5"]

    def get_all() -> dict[str, tuple[int, str, str]]:
        with app.test_client() as client:
            got = {page: client.get(page) for page in pages}
        return {
            page: (r.status_code, r.mimetype, r.get_data(as_text=True)) for page, r in got.items()
        }

    plain = get_all()
    monkeypatch.setenv("_MLFLOW_SGI_NAME", "waitress")  # the Flask app itself, not uvicorn's
    assert tracking_ui_app.create_app() is app
    assert tracking_ui_app.create_app(app) is app  # a second call changes nothing more
    served = get_all()

    index = served.pop("/")
    assert index[:2] == (200, "text/html") and plain["/"][0] == 200
    assert index[2].count(tracking_ui_app.SCRIPT) == 1
    assert index[2].index(tracking_ui_app.SCRIPT) < index[2].index("static/js/main.")  # the bundle
    assert index[2].replace(tracking_ui_app.SCRIPT, "") == plain["/"][2]
    script = tracking_ui_app.SCRIPT
    assert 'localStorage.getItem("mlflow.workflowType_v1")===null' in script  # only if unset
    assert 'localStorage.setItem("mlflow.workflowType_v1","\\"machine_learning\\"")' in script
    assert served == {page: plain[page] for page in served}
    assert experiment_id in served[pages[-1]][2] and "sartm-ci" in served[pages[-1]][2]

    from fastapi import FastAPI

    monkeypatch.setenv("_MLFLOW_SGI_NAME", "uvicorn")  # `mlflow ui`'s default server
    assert isinstance(tracking_ui_app.create_app(), FastAPI)  # MLflow's ASGI app around it
