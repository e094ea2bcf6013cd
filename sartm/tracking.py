"""MLflow tracking: one SQLite store in the project, initialised once under a lock, retried writes.

Why the care: MLflow creates a fresh SQLite store by running its alembic migrations, and several
processes doing that at once (a Snakemake fan-out) corrupt the file. So `init_store` takes a file
lock beside the database before the first connection of each process, and creates the
experiment with an explicit absolute `file://` artifact location (never MLflow's default
`./mlruns`). Writes that still meet `database is locked` are retried with back-off.

The orchestrators never read run ids: files are the contract between steps; MLflow is the lab
notebook. The run name is the run's path in `results/` (`cfg.run_id`, e.g. `pst900/full`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from sartm.config import Config
from sartm.errors import SartmError

ENV_URI = "MLFLOW_TRACKING_URI"
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
T = TypeVar("T")
_initialised: dict[tuple[str, str], str] = {}


class TrackingError(SartmError, RuntimeError):
    """The tracking store cannot be reached or initialised."""


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
    key = (uri, cfg.tracking.experiment)
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

    try:
        client = _client(uri)
        found = with_retry(client.get_experiment_by_name, cfg.tracking.experiment)
        if found is not None:
            return found.experiment_id
        return with_retry(
            client.create_experiment,
            cfg.tracking.experiment,
            artifact_location=artifact_location(cfg),
        )
    except MlflowException as exc:
        raise TrackingError(f"MLflow store {uri}: {exc.message}") from exc


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


class Tracker:
    """One MLflow run, written through `MlflowClient` (no global active-run state)."""

    enabled = True

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            with_retry(self.client.log_batch, self.run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """One `log_batch` call for all of them (per epoch), non-finite values skipped."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, step or 0) for k, v in metrics.items() if _finite(v)]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            with_retry(self.client.log_batch, self.run_id, metrics=chunk)

    def log_history(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Log the (metric, step) pairs of `rows` (step = the row's "epoch") that the run lacks;
        returns how many. Idempotent by step: a resume replays the whole history after a kill
        between a checkpoint and its metrics, and no step is logged twice."""
        from mlflow.entities import Metric

        rows = list(rows)
        keys = sorted({k for row in rows for k in row if k != "epoch"})
        logged = {
            key: {m.step for m in with_retry(self.client.get_metric_history, self.run_id, key)}
            for key in keys
        }
        stamp = int(time.time() * 1000)
        items = [
            Metric(k, float(v), stamp, row["epoch"])
            for row in rows
            for k, v in row.items()
            if k != "epoch" and _finite(v) and row["epoch"] not in logged[k]
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

    def end(self, status: str = "FINISHED") -> None:
        with_retry(self.client.set_terminated, self.run_id, status)


class NullTracker:
    """Same interface, does nothing: for ranks other than 0."""

    enabled = False
    run_id = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def start_run(
    cfg: Config,
    *,
    stage: str,
    tags: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
    log_config: bool = True,
) -> Tracker:
    """Open the run `cfg.run_id` (or reopen `resume_run_id` when it still exists in the store).

    A new run gets the flattened config as params and the standard tags: dataset, run name,
    preset, synthetic flag, config hash, stage (train / evaluate) and whatever `tags` adds
    (git commit, data manifest hash, checkpoint path).
    """
    from mlflow.exceptions import MlflowException

    experiment_id = init_store(cfg)
    client = _client(tracking_uri(cfg))
    if resume_run_id:
        try:
            run = with_retry(client.get_run, resume_run_id)
            if run.info.experiment_id == experiment_id:
                with_retry(client.update_run, resume_run_id, status="RUNNING")
                tracker = Tracker(client, resume_run_id)
                tracker.set_tags(dict(tags or {}))
                return tracker
        except MlflowException:
            pass  # deleted, or another store: start a fresh run
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
        client.create_run, experiment_id, run_name=cfg.run_id, tags={**base_tags, **(tags or {})}
    )
    tracker = Tracker(client, run.info.run_id)
    if log_config:
        tracker.log_params(cfg.to_dict())
    return tracker
