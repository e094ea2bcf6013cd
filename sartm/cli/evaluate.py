"""`sartm evaluate`: score a trained run; writes results/<preset>/eval/<dataset>/<run>/metrics.json."""

from __future__ import annotations

from pathlib import Path

import click

from sartm.cli.common import config_options
from sartm.tracking import run_line


@click.command("evaluate")
@config_options(with_run=True)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A checkpoint file instead of the run's own (eval.checkpoint chooses those).",
)
@click.option("--split", default="test", help="Split to score (test; val where one exists).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate(cfg, checkpoint: Path | None, split: str, quiet: bool) -> None:
    """Evaluate a run: mIoU / mAcc / mF1 / pixel accuracy, subsets, robustness, predictions."""
    # torch: kept out of every `sartm` command's start-up
    from sartm.engine.evaluate import evaluate as run_evaluation

    metrics = run_evaluation(cfg, checkpoint=checkpoint, split=split, quiet=quiet)
    scores = metrics[split]
    click.echo(
        f"{cfg.run_id} {split}: mIoU {scores['miou']:.4f}  mAcc {scores['macc']:.4f}  "
        f"mF1 {scores['mf1']:.4f}  pixel acc {scores['pixel_acc']:.4f}"
    )
    if f"{split}_best" in metrics:
        click.echo(
            f"{cfg.run_id} {split} (best-on-test, the authors' protocol): "
            f"mIoU {metrics[f'{split}_best']['miou']:.4f}"
        )
    if line := run_line(cfg, metrics.get("mlflow")):
        click.echo(line)
