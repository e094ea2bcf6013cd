"""`sartm model ...`: inspect the configured SARTM model."""

from __future__ import annotations

from pathlib import Path

import click

from sartm import paths
from sartm.cli.common import config_options
from sartm.data.spec import spec_for


@click.group()
def model() -> None:
    """Inspect the SARTM model of a configuration."""


def _num_classes(cfg) -> int:
    # numpy and PIL: kept out of every `sartm` command's start-up
    from sartm.data.common import DataError, load_meta

    try:
        return spec_for(cfg.data.dataset).num_classes
    except KeyError:
        root = paths.processed_dir(cfg.data.dataset, Path(cfg.data.root))
        try:
            return len(load_meta(root)["classes"])
        except DataError as exc:
            raise click.ClickException(
                f"{cfg.data.dataset}: unknown dataset and {exc}; or pass --num-classes"
            ) from exc


@model.command()
@config_options(with_run=True)
@click.option(
    "--sam2-checkpoint",
    "checkpoint",
    default=None,
    help="SAM2 base checkpoint (a file, or a name from `sartm weights list`) to load and check; "
    "default: model.checkpoint if it is available. (`--checkpoint` of other commands is a "
    "training checkpoint.)",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=2),
    default=None,
    help="Override the class count (default: the dataset's).",
)
def summary(cfg, checkpoint: str | None, num_classes: int | None) -> None:
    """Parameters by component, shapes at the crop size, and the checkpoint load report.

    Exits non-zero when the checkpoint does not fit the configured backbone.
    """
    # torch and sam2: kept out of every `sartm` command's start-up
    from sartm.model.sam2_weights import CheckpointError, WeightsError, resolve_checkpoint
    from sartm.model.summary import summarise

    path = None
    name = checkpoint or cfg.model.checkpoint
    if name:
        try:
            path = resolve_checkpoint(name)
        except WeightsError as exc:
            if checkpoint:  # asked for explicitly: it must be there
                raise click.ClickException(str(exc)) from exc
            click.echo(f"note: model.checkpoint not loaded: {exc}")
    try:
        result = summarise(cfg, num_classes or _num_classes(cfg), checkpoint=path)
    except CheckpointError as exc:
        raise click.ClickException(f"checkpoint does not fit: {exc}") from exc
    click.echo(result.format())
    if not result.ok:
        raise click.ClickException("checkpoint does not fit the model (see the report above)")
