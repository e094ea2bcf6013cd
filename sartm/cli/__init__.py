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
from sartm.errors import SartmError


class _Group(click.Group):
    """Project errors, and the file system's (a full disk, a folder without write permission),
    become one line (`Error: <message>`); `--debug` keeps the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SartmError, OSError) as exc:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(str(exc)) from exc


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__, prog_name="sartm")
@click.option(
    "--debug",
    is_flag=True,
    envvar="SARTM_DEBUG",
    show_envvar=True,
    help="Show the traceback of a project error instead of its one-line message.",
)
def cli(debug: bool) -> None:
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
