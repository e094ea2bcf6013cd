"""The `sartm` command: argument parsing only, one module per noun, no logic of its own."""

from __future__ import annotations

import importlib

import click

from sartm import __version__
from sartm.errors import SartmError

# Each command's module is imported only when that command runs (click's lazy-loading recipe):
# `sartm train` then skips, e.g., the download and extraction code that `sartm data` imports.
COMMANDS = {
    "data": "sartm.cli.data:data",
    "embed": "sartm.cli.embed:embed",
    "tracking": "sartm.cli.tracking:tracking",
    "train": "sartm.cli.train:train",
    "evaluate": "sartm.cli.evaluate:evaluate",
    "predict": "sartm.cli.predict:predict",
    "export": "sartm.cli.predict:export",
    "weights": "sartm.cli.weights:weights",
    "pretrain": "sartm.cli.pretrain:pretrain",
    "model": "sartm.cli.model:model",
    "report": "sartm.cli.report:report",
    "pipeline": "sartm.cli.pipeline:pipeline",
}


class _Group(click.Group):
    """Commands loaded when used; project errors, and the file system's (a full disk, a folder
    without write permission), become one line (`Error: <message>`); `--debug` keeps the
    traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

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


def main() -> None:
    cli()
