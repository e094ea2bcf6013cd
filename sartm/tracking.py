"""MLflow tracking: one SQLite store in the project, initialised once under a lock, retried writes.

Why the care: MLflow creates a fresh SQLite store by running its alembic migrations, and several
processes doing that at once (a Snakemake fan-out) corrupt the file. So `init_store` takes a file
lock beside the database before the first connection of each process, and creates the
experiment with an explicit absolute `file://` artifact location (never MLflow's default
`./mlruns`). Writes that still meet `database is locked` are retried with back-off.

The orchestrators never read run ids: files are the contract between steps; MLflow is the lab
notebook. The run name is the run's path in `results/<preset>/` (`cfg.run_id`, e.g.
`pst900/full`). Each preset logs into an experiment of its own (`tracking.experiment:
"sartm-{preset}"` in params.yaml: `sartm-demo`, `sartm-ci`, `sartm-paper`), so that the demo's
`pst900/full` and the ci preset's are never two runs of one name in one experiment.

What the MLflow UI shows (MLflow 3): the experiment is tagged as model training
(`mlflow.experimentKind`) and carries a description, a primary metric and a saved view
("sartm: results": the preset and mIoU columns; MLflow shows no metric column by default). The
links sartm prints (`ui_url`) open the runs in model-training mode on that view. The UI reads
neither the tag nor a link's mode for later visits, only its sidebar switch (browser storage):
`sartm tracking ui` serves it through sartm/tracking_ui_app.py, which presets that choice to
model training for a browser that has made none. Each training
job is one run (a resume reopens it); each evaluation is a child run of it (`mlflow.parentRunId`,
`mlflow.runType=evaluation`, which the UI shows expanded under its parent) with `eval/...`
metrics, per-class IoU, its dataset split as an input, prediction images and the scored
checkpoint as a logged model.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import re
import shutil
import string
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from sartm.config import Config
from sartm.errors import SartmError

ENV_URI = "MLFLOW_TRACKING_URI"
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
UI_PORT = 5000  # `sartm tracking ui --port` default: the port of the links sartm prints
NOT_METRICS = ("epoch", "step")  # history.csv columns that are the x axis, not metrics
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3 UI: open on the runs, not GenAI traces
PRIMARY_METRIC = "eval/test_miou"  # the experiment's primary metric (charts' default axis)
RESULTS_VIEW = "sartm-results"  # id of the saved view with the preset and mIoU columns
KIND_TAG = "mlflow.experimentKind"
UI_MODE = "workflowType=machine_learning"  # URL parameter: the UI in model-training mode
EVALUATION_TAGS = {"mlflow.runType": "evaluation"}  # the UI expands such runs' parents
VIEW_TAG = f"mlflow.sharedViewState.{RESULTS_VIEW}"
RESULTS_COLUMNS = ("tags.`preset`", "metrics.`test_miou`", "metrics.`val_miou`",
                   "metrics.`eval/test_miou`")  # fmt: skip
EXPERIMENT_FIELDS = ("preset",)  # the placeholders tracking.experiment may hold
EXPERIMENT_NOTE = """SARTM training and evaluation runs of this project{of_preset}.

* One run per training job, named after its run id (`<dataset>/<run>`, as in its folder
  `results/<preset>/train/<dataset>/<run>`): config as params, per-epoch metrics, the training
  split as its dataset input.
* Each evaluation is a child run of its training job (shown under it): `eval/...` metrics,
  per-class IoU, subset and modality-robustness scores, prediction images, and the scored
  checkpoint as a logged model. A run's description names the report tables that read it.
* The `preset` tag says which preset (demo / ci / paper) produced a run; runs tagged
  `synthetic=true` used synthetic stand-in data and are not comparable to the paper.
* The saved view "sartm: results" (the Views menu) adds the preset and mIoU columns.
* `sartm tracking ui` prints a link that opens these runs in "Model training" mode on that view,
  and opens in that mode at its bare address too. On another MLflow server, MLflow starts in
  GenAI mode: pick "Model training" at the top of the sidebar once (the browser remembers it)."""
T = TypeVar("T")
_initialised: dict[tuple[str, str], str] = {}


class TrackingError(SartmError, RuntimeError):
    """The tracking store cannot be reached or initialised, or its settings are wrong."""


def _experiment_parts(template: str) -> list[tuple[str, str | None]]:
    """`tracking.experiment` as (literal text, placeholder or None) pairs; a placeholder other than
    those of EXPERIMENT_FIELDS is a TrackingError that names the setting."""
    where = f"params.yaml: tracking.experiment {template!r}"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone { or }
        raise TrackingError(
            f"{where}: {exc}; the only placeholder is {{preset}}, and {{{{ and }}}} stand for "
            "literal braces"
        ) from None
    parts = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (field not in EXPERIMENT_FIELDS or spec or conversion):
            written = (
                field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            )
            raise TrackingError(
                f"{where}: unknown placeholder {{{written}}}; the only one is {{preset}} "
                '(e.g. "sartm-{preset}": one experiment per preset)'
            )
        parts.append((literal, field))
    return parts


def experiment_name(cfg: Config) -> str:
    """The run's MLflow experiment: params.yaml's `tracking.experiment` with `{preset}` replaced
    by the run's preset (`sartm-{preset}` -> `sartm-ci`); a name without it stays as written."""
    values = {"preset": cfg.preset}
    return "".join(
        t + (values[f] if f else "") for t, f in _experiment_parts(cfg.tracking.experiment)
    )


def experiment_preset(cfg: Config) -> str | None:
    """The preset whose runs alone the run's experiment holds, None when its name has no
    `{preset}` (one experiment for all presets)."""
    fields = {f for _, f in _experiment_parts(cfg.tracking.experiment)}
    return cfg.preset if "preset" in fields else None


def tracking_uri(cfg: Config) -> str:
    """`MLFLOW_TRACKING_URI` if set, else `cfg.tracking.uri` (default `sqlite:///mlflow.db`)."""
    return os.environ.get(ENV_URI) or cfg.tracking.uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def artifact_location(cfg: Config) -> str:
    """Absolute `file://` URI of the artifact folder (set explicitly on the experiment)."""
    return Path(cfg.tracking.artifact_root).resolve().as_uri()


def _is_locked_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if "database is locked" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def with_retry(fn: Callable[..., T], *args: Any, attempts: int = 8, **kwargs: Any) -> T:
    """Call `fn`, retrying with exponential back-off while SQLite reports `database is locked`."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_locked_error(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def init_store(cfg: Config) -> str:
    """Create (if needed) the store and the experiment; return the experiment id.

    Safe to call from many processes at once: for a SQLite store the first connection of each
    process, which may run the schema migrations, happens under a file lock beside the database.
    """
    uri = tracking_uri(cfg)
    key = (uri, experiment_name(cfg))
    if key in _initialised:
        return _initialised[key]
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db) + ".lock", timeout=300):
            experiment_id = _get_or_create_experiment(uri, cfg)
    else:
        experiment_id = _get_or_create_experiment(uri, cfg)
    _initialised[key] = experiment_id
    return experiment_id


def _get_or_create_experiment(uri: str, cfg: Config) -> str:
    from mlflow.exceptions import MlflowException

    name, preset = experiment_name(cfg), experiment_preset(cfg)
    try:
        client = _client(uri)
        found = with_retry(client.get_experiment_by_name, name)
        if found is None:
            experiment_id = with_retry(
                client.create_experiment, name, artifact_location=artifact_location(cfg)
            )
            found = with_retry(client.get_experiment, experiment_id)
        for key, value in _missing_experiment_tags(found.tags, preset).items():
            with_retry(client.set_experiment_tag, found.experiment_id, key, value)
        return found.experiment_id
    except MlflowException as exc:
        raise TrackingError(f"MLflow store {uri}: {exc.message}") from exc


def results_view_state() -> dict[str, Any]:
    """The saved view's state (MLflow's runs-page UI state): the default columns and ours."""
    defaults = ("attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`")
    return {"selectedColumns": [*defaults, *RESULTS_COLUMNS]}


def experiment_tags(preset: str | None = None) -> dict[str, str]:
    """What the MLflow UI reads from the experiment: kind, description (naming `preset`, the one
    preset whose runs it holds, if given), primary metric, and the saved view
    (`mlflow.sharedViewState.<id>`, the envelope MLflow's "Save view" writes)."""
    from mlflow.utils.mlflow_tags import (
        MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER,
        MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME,
        MLFLOW_RUN_NOTE,
    )

    now = int(time.time() * 1000)
    view = {"name": "sartm: results", "createdAt": now, "updatedAt": now,
            "state": json.dumps(results_view_state())}  # fmt: skip
    return {
        KIND_TAG: EXPERIMENT_KIND,
        MLFLOW_RUN_NOTE: EXPERIMENT_NOTE.format(of_preset=f", preset `{preset}`" if preset else ""),
        MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME: PRIMARY_METRIC,
        MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER: "True",
        VIEW_TAG: json.dumps(view),
    }


def _missing_experiment_tags(
    current: Mapping[str, str], preset: str | None = None
) -> dict[str, str]:
    """The experiment tags to set: those absent, a kind the UI only inferred, and our saved view
    when this version of sartm defines it otherwise. A kind or a description someone chose in
    the UI is kept."""
    out = {}
    for key, value in experiment_tags(preset).items():
        old = current.get(key)
        if old is None:
            out[key] = value
        elif key == KIND_TAG and (old.endswith("_inferred") or old == "no_inferred_type"):
            out[key] = value
        elif key == VIEW_TAG and _view_content(old) != _view_content(value):
            out[key] = value
    return out


def _view_content(envelope: str) -> tuple[Any, Any]:
    try:
        view = json.loads(envelope)
        return view.get("name"), json.loads(view.get("state"))
    except (TypeError, ValueError, AttributeError):
        return None, None


def ui_url(cfg: Config, experiment_id: str, run_id: str | None = None, port: int = UI_PORT) -> str:
    """The MLflow UI page of the experiment (opened on the saved results view) or of one run:
    on `sartm tracking ui`'s address, or on the tracking server when the URI is one. The link
    sets the UI's mode to model training: MLflow 3.17's UI takes its mode from the URL or from
    the sidebar's GenAI / Model training switch (default GenAI), not from the experiment tag, and
    keeps only the switch's choice (localStorage `mlflow.workflowType_v1`), not the URL's."""
    uri = tracking_uri(cfg)
    remote = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if remote else f"http://127.0.0.1:{port}"
    page = f"{base}/#/experiments/{experiment_id}/runs"
    if run_id:
        return f"{page}/{run_id}?{UI_MODE}"
    return f"{page}?{UI_MODE}&viewStateShareKey={RESULTS_VIEW}"


def run_line(cfg: Config, logged: Mapping[str, Any] | None) -> str | None:
    """`MLflow run <id>: <link>` for `{"experiment_id", "run_id"}` (what train / evaluate
    return under "mlflow"), None when nothing was logged."""
    if not logged or not logged.get("run_id"):
        return None
    return (
        f"MLflow run {logged['run_id']}: {ui_url(cfg, logged['experiment_id'], logged['run_id'])}"
    )


def report_readers(cfg: Config) -> list[str]:
    """Titles of the report tables that read this run's results (experiments.yaml resolved against
    the project's params.yaml for the run's preset, as the report does); [] for other runs."""
    from sartm import config as cfgmod
    from sartm import runs

    try:
        params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
        aliases = cfgmod.seed_run_aliases(params, cfg.preset)
        return [
            runs.item_spec(name)[1].get("title", name)
            for name in runs.table_names(params, cfg.preset)
            if any(
                cfg.run_id in ids
                for ids in runs.item_jobs(name, params, cfg.preset, aliases).values()
            )
        ]
    except SartmError:  # a preset or run the project's params.yaml does not define
        return []


def run_note(cfg: Config, what: str) -> str:
    """A run's description (Markdown): what it is, on which data, which tables read it."""
    data = "SYNTHETIC stand-in data, not comparable to the paper" if cfg.synthetic else "real data"
    lines = [f"**{cfg.run_id}**: {what} (preset `{cfg.preset}`, {cfg.data.dataset}: {data})."]
    readers = report_readers(cfg)
    if readers:
        lines += ["", "Read by the report's tables:", *(f"* {title}" for title in readers)]
    else:
        lines += ["", f"No report table of preset `{cfg.preset}` reads this run."]
    return "\n".join(lines)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> `{"section.key": "value"}` (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)
    return out


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def epoch_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """A history row without its axes (epoch is the step; the iteration count is no metric)."""
    return {k: v for k, v in row.items() if k not in NOT_METRICS}


class Tracker:
    """One MLflow run, written through `MlflowClient` (no global active-run state)."""

    enabled = True

    def __init__(
        self,
        client: Any,
        run_id: str,
        experiment_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self._monitor = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            with_retry(self.client.log_batch, self.run_id, params=chunk)

    def log_metrics(
        self, metrics: Mapping[str, float], *, step: int | None = None, model_id: str | None = None
    ) -> None:
        """One `log_batch` call for all of them (per epoch), non-finite values skipped; with
        `model_id` they are also the scores of that logged model."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [
            Metric(k, float(v), stamp, step or 0, model_id=model_id)
            for k, v in metrics.items()
            if _finite(v)
        ]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            with_retry(self.client.log_batch, self.run_id, metrics=chunk)

    def log_history(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Log the (metric, step) pairs of `rows` (step = the row's "epoch") that the run lacks;
        returns how many. Idempotent by step: a resume replays the whole history after a kill
        between a checkpoint and its metrics, and no step is logged twice."""
        from mlflow.entities import Metric

        rows = list(rows)
        keys = sorted({k for row in rows for k in epoch_metrics(row)})
        logged = {
            key: {m.step for m in with_retry(self.client.get_metric_history, self.run_id, key)}
            for key in keys
        }
        stamp = int(time.time() * 1000)
        items = [
            Metric(k, float(v), stamp, row["epoch"])
            for row in rows
            for k, v in epoch_metrics(row).items()
            if _finite(v) and row["epoch"] not in logged[k]
        ]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            with_retry(self.client.log_batch, self.run_id, metrics=chunk)
        return len(items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            with_retry(self.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with_retry(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        with_retry(self.client.log_dict, self.run_id, data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        with_retry(self.client.log_figure, self.run_id, figure, artifact_file)

    def log_dataset(self, dataset: Any, context: str) -> None:
        """The samples a split holds as the run's dataset input (`mlflow.log_input`): named
        `<source>/<split>`, digest = the manifest's SHA-256 (first 12 digits), profile = its
        row count; `context` says what the run used it for (training, evaluation, ...)."""
        import pandas as pd
        from mlflow.data import from_pandas
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from sartm.engine.provenance import manifest_hash

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local folder
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(Path(dataset.root).resolve()))
        name = f"{dataset.meta.get('name', Path(dataset.root).name)}/{dataset.split}"
        total = dataset.meta.get("splits", {}).get(dataset.split)
        if isinstance(total, int) and total != len(dataset):  # data.max_samples
            name += f"[:{len(dataset)}]"
        frame = pd.DataFrame(list(dataset.rows))
        digest = (manifest_hash(Path(dataset.root)) or "no-manifest")[:12]
        entity = from_pandas(frame, source=source, name=name, digest=digest)._to_mlflow_entity()
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        with_retry(self.client.log_inputs, self.run_id, [DatasetInput(entity, tags)])

    def log_model(
        self, path: Path, *, name: str, tags: Mapping[str, str], source_run_id: str | None = None
    ) -> str:
        """A checkpoint file as an MLflow logged model and its id: an output of `source_run_id`
        (the training run that wrote it; default this run) and an input of this run. A file the
        experiment already holds (same SHA-256) is linked, not copied again."""
        from mlflow.entities import LoggedModelInput, LoggedModelOutput

        from sartm.engine.run_checkpoint import sha256_file

        source = source_run_id or self.run_id
        name = re.sub(r"[/:.%\"']", "-", name)  # characters MLflow refuses in a model name
        sha = sha256_file(path)
        found = with_retry(
            self.client.search_logged_models,
            [self.experiment_id],
            filter_string=f"tags.checkpoint_sha256 = '{sha}'",
            max_results=1,
        )
        if found:
            model_id = found[0].model_id
        else:
            model = with_retry(
                self.client.create_logged_model,
                self.experiment_id,
                name=name,
                source_run_id=source,
                tags={**tags, "checkpoint_sha256": sha},
                model_type="sartm checkpoint",
            )
            model_id = model.model_id
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copy2(path, Path(tmp) / Path(path).name)
                with_retry(self.client.log_model_artifacts, model_id, tmp)
            with_retry(self.client.finalize_logged_model, model_id, "READY")
            with_retry(self.client.log_outputs, source, [LoggedModelOutput(model_id, 0)])
        if source != self.run_id:
            with_retry(self.client.log_inputs, self.run_id, models=[LoggedModelInput(model_id)])
        return model_id

    def start_system_metrics(self, *, resume: bool = False) -> None:
        """MLflow's system metrics (`system/...`: CPU, memory, disk, network, and GPUs where
        pynvml is installed) sampled in a background thread until `end`."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        uri = self.client._tracking_client.tracking_uri
        self._monitor = SystemMetricsMonitor(self.run_id, resume_logging=resume, tracking_uri=uri)
        self._monitor.start()

    def end(self, status: str = "FINISHED") -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        with_retry(self.client.set_terminated, self.run_id, status)


class NullTracker:
    """Same interface, does nothing: for ranks other than 0."""

    enabled = False
    run_id = None
    experiment_id = None
    parent_run_id = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def start_run(
    cfg: Config,
    *,
    stage: str,
    tags: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    note: str | None = None,
    log_config: bool = True,
) -> Tracker:
    """Open the run `cfg.run_id` (or reopen `resume_run_id` when it still exists in the store).

    A new run gets the flattened config as params and the standard tags: dataset, run name,
    preset, synthetic flag, config hash, stage (train / evaluate), MLflow's source tags (entry
    point `sartm <stage>`, git commit, user), the description `note`, the parent run
    (`parent_run_id`, when it is a run of the experiment) and whatever `tags` adds (git state,
    data manifest hash, checkpoint path).
    """
    from mlflow.entities import SourceType
    from mlflow.exceptions import MlflowException
    from mlflow.utils import mlflow_tags as mt

    from sartm.engine.provenance import git_state

    experiment_id = init_store(cfg)
    client = _client(tracking_uri(cfg))
    commit = git_state().get("git_commit")
    standard = {
        mt.MLFLOW_SOURCE_NAME: f"sartm {stage}",
        mt.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL),
        **({mt.MLFLOW_GIT_COMMIT: commit} if commit else {}),
        **({mt.MLFLOW_RUN_NOTE: note} if note else {}),
    }
    if resume_run_id:
        try:
            run = with_retry(client.get_run, resume_run_id)
            if run.info.experiment_id == experiment_id:
                with_retry(client.update_run, resume_run_id, status="RUNNING")
                tracker = Tracker(client, resume_run_id, experiment_id)
                tracker.set_tags({**standard, **(tags or {})})
                return tracker
        except MlflowException:
            pass  # deleted, or another store: start a fresh run
    if parent_run_id:
        try:
            parent = with_retry(client.get_run, parent_run_id)
            if parent.info.experiment_id == experiment_id:
                standard[mt.MLFLOW_PARENT_RUN_ID] = parent_run_id
        except MlflowException:
            pass  # deleted, or another store: a run of its own
    with contextlib.suppress(Exception):
        standard[mt.MLFLOW_USER] = getpass.getuser()
    base_tags = {
        "dataset": cfg.data.dataset,
        "logical_dataset": cfg.dataset,
        "run_name": cfg.run,
        "run_id_path": cfg.run_id,
        "preset": cfg.preset,
        "synthetic": str(cfg.synthetic).lower(),
        "config_hash": cfg.hash(),
        "stage": stage,
    }
    run = with_retry(
        client.create_run,
        experiment_id,
        run_name=run_name or cfg.run_id,
        tags={**base_tags, **standard, **(tags or {})},
    )
    tracker = Tracker(client, run.info.run_id, experiment_id, standard.get(mt.MLFLOW_PARENT_RUN_ID))
    if log_config:
        tracker.log_params(cfg.to_dict())
    return tracker
