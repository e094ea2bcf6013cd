"""The `sartm` command: argument parsing only, one module per noun, no logic of its own."""

from __future__ import annotations

import click

from sartm import __version__
from sartm.cli.data import data
from sartm.cli.embed import embed
from sartm.cli.evaluate import evaluate
from sartm.cli.model import model
from sartm.cli.pipeline import pipeline
from sartm.cli.predict import export, predict
from sartm.cli.pretrain import pretrain
from sartm.cli.report import report
from sartm.cli.tracking import tracking
from sartm.cli.train import train
from sartm.cli.weights import weights


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="sartm")
def cli() -> None:
    """SARTM: Segment Any RGB-Thermal Model, reproducible pipeline."""


cli.add_command(data)
cli.add_command(embed)
cli.add_command(tracking)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(predict)
cli.add_command(export)
cli.add_command(weights)
cli.add_command(pretrain)
cli.add_command(model)
cli.add_command(report)
cli.add_command(pipeline)


def main() -> None:
    cli()
