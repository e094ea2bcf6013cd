"""`sartm train`: train one run of the run list (single process, or under torchrun for DDP)."""

from __future__ import annotations

import os

import click

from sartm.cli.common import config_options
from sartm.tracking import run_line


@click.command("train")
@config_options(with_run=True)
@click.option(
    "--resume/--no-resume",
    default=None,
    help="Continue from last.pt (default: automatically when its config hash matches); "
    "--no-resume starts over.",
)
@click.option(
    "--restart-if-changed",
    "restart_changed",
    is_flag=True,
    help="Start over when last.pt holds another configuration (default: refuse). "
    "Snakemake and DVC pass it: a job reruns exactly when its configuration changed.",
)
@click.option(
    "--evaluate",
    "evaluate_after",
    is_flag=True,
    help="Evaluate the final checkpoint(s) in the same process afterwards.",
)
@click.option("--quiet", is_flag=True, help="One log line per epoch instead of progress bars.")
def train(
    cfg, resume: bool | None, restart_changed: bool, evaluate_after: bool, quiet: bool
) -> None:
    """Train a run; writes results/<preset>/train/<dataset>/<run>/ (checkpoints, history)."""
    # torch: kept out of every `sartm` command's start-up
    from sartm.engine.train import train as run_training

    result = run_training(
        cfg,
        resume=resume,
        restart_changed=restart_changed,
        evaluate_after=evaluate_after,
        quiet=quiet,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    line = f"{cfg.run_id}: {result['epochs']} epochs in {result['train_time_s']:.1f} s"
    if result.get("best_miou") is not None:
        line += f", best {result['selection_split']} mIoU {result['best_miou']:.4f} (epoch {result['best_epoch']})"
    click.echo(line)
    _echo_run(cfg, result.get("mlflow"))
    if "evaluation" in result:
        ev = result["evaluation"]
        click.echo(f"{cfg.run_id}: {ev['split']} mIoU {ev[ev['split']]['miou']:.4f}")
        _echo_run(cfg, ev.get("mlflow"))


def _echo_run(cfg, logged) -> None:
    """The MLflow run a step logged: its id and its page in `sartm tracking ui`."""
    if line := run_line(cfg, logged):
        click.echo(line)
