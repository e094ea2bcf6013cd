"""`sartm tracking ...`: the MLflow store (create it once before a parallel fan-out; browse it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from sartm import tracking as trk
from sartm.cli.common import config_options


@click.group()
def tracking() -> None:
    """The MLflow tracking store (default: sqlite:///mlflow.db in the project)."""


@tracking.command("init")
@config_options()
def init(cfg) -> None:
    """Create the store and the experiment (run this before starting runs in parallel)."""
    experiment_id = trk.init_store(cfg)
    click.echo(f"tracking store {trk.tracking_uri(cfg)}")
    click.echo(f"experiment {trk.experiment_name(cfg)!r} (id {experiment_id})")
    click.echo(f"artifacts {trk.artifact_location(cfg)}")
    click.echo(f"browse with `sartm tracking ui`: {trk.ui_url(cfg, experiment_id)}")


@tracking.command("ui")
@click.option("--port", default=trk.UI_PORT, show_default=True, help="Port on 127.0.0.1.")
@config_options()
def ui(cfg, port: int) -> None:
    """Browse the runs: `mlflow ui` on the store, bound to 127.0.0.1 only, opening in the
    "Model training" mode (sartm/tracking_ui_app.py).

    One worker and no job runner (MLflow's GenAI jobs: 8 more processes) unless
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise: browsing needs neither."""
    experiment_id = trk.init_store(cfg)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--app-name",  # sartm/tracking_ui_app.py: opens in Model training mode
        "sartm",
        "--backend-store-uri",
        trk.tracking_uri(cfg),
        "--default-artifact-root",
        trk.artifact_location(cfg),
    ]
    click.echo(" ".join(command))
    click.echo(f"runs of {trk.experiment_name(cfg)!r}: {trk.ui_url(cfg, experiment_id, port=port)}")
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    raise SystemExit(_run_group(command, env))


def _run_group(command: list[str], env: dict[str, str]) -> int:
    """Run `command` in a process group of its own and pass SIGTERM, SIGINT and SIGHUP on to the
    whole group: `mlflow ui` starts uvicorn workers and job runners that outlive it otherwise."""
    server = subprocess.Popen(command, env=env, start_new_session=True)

    def stop(signum, frame) -> None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    code = server.wait()
    stop(None, None)  # whatever of the group is left once mlflow itself has exited
    return code if code >= 0 else 128 - code
