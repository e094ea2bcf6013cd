"""`sartm tracking ...`: the MLflow store (create it once before a parallel fan-out; browse it)."""

from __future__ import annotations

import subprocess
import sys

import click

from sartm.cli.common import config_options


@click.group()
def tracking() -> None:
    """The MLflow tracking store (default: sqlite:///mlflow.db in the project)."""


@tracking.command("init")
@config_options()
def init(cfg) -> None:
    """Create the store and the experiment (run this before starting runs in parallel)."""
    from sartm import tracking as trk

    try:
        experiment_id = trk.init_store(cfg)
    except trk.TrackingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"tracking store {trk.tracking_uri(cfg)}")
    click.echo(f"experiment {cfg.tracking.experiment!r} (id {experiment_id})")
    click.echo(f"artifacts {trk.artifact_location(cfg)}")


@tracking.command("ui")
@click.option("--port", default=5000, help="Port on 127.0.0.1.")
@config_options()
def ui(cfg, port: int) -> None:
    """Browse the runs: `mlflow ui` on the store, bound to 127.0.0.1 only."""
    from sartm import tracking as trk

    trk.init_store(cfg)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        trk.tracking_uri(cfg),
        "--default-artifact-root",
        trk.artifact_location(cfg),
    ]
    click.echo(" ".join(command))
    raise SystemExit(subprocess.call(command))
