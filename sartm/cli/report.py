"""`sartm report tables|figures|summary|list`: the paper's tables and figures from the results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from sartm import config as cfgmod
from sartm import paths, runs
from sartm.report.results import ReportError, write_scores


@click.group()
def report() -> None:
    """Tables, figures and the summary from results/<preset>/eval/<dataset>/<run>/metrics.json."""


def _options(func: Callable) -> Callable:
    options = [
        click.option(
            "--run",
            "run_options",
            multiple=True,
            metavar="DATASET/RUN[=RUN_ID]",
            help="A run to read and the training job that serves it (repeat per run and seed; "
            "default: resolved from params.yaml).",
        ),
        click.option(
            "--params",
            "params_path",
            type=click.Path(path_type=Path),
            default="params.yaml",
            help="Settings file (for the default of --run).",
        ),
        click.option("--preset", default=None, help="Preset (default: the one in params.yaml)."),
        click.option(
            "--results",
            "results_root",
            type=click.Path(path_type=Path),
            default=None,
            help="The preset's results folder [default: results/<preset>].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _Reading:
    """What one report command reads: params.yaml, the preset and its results folder."""

    def __init__(self, params_path: Path, preset: str | None, results_root: Path | None):
        self.params = cfgmod.load_params(params_path)
        self.preset = preset or self.params["preset"]
        self.results = results_root or paths.results_root(self.preset)

    def mapping(self, names: list[str], run_options: tuple[str, ...]) -> dict[str, list[str]]:
        if run_options:
            return runs.parse_run_options(run_options)
        out: dict[str, list[str]] = {}
        for name in names:
            out.update(runs.item_jobs(name, self.params, self.preset))
        return out

    def make_each(self, names: list[str], run_options: tuple[str, ...], make: Callable) -> None:
        """make(name, {logical: [run ids]}) for each table or figure; print what it wrote."""

        def each() -> list[Path]:
            return [p for name in names for p in make(name, self.mapping([name], run_options))]

        for path in _guard(each):
            click.echo(path)


def _guard(action: Callable[[], list[Path]]) -> list[Path]:
    try:
        return action()
    except (ReportError, runs.RunListError, cfgmod.ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@report.command("tables")
@click.argument("names", nargs=-1)
@_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for <name>.md, .csv, .tex and .html [default: results/<preset>/tables].",
)
def tables_cmd(
    names: tuple[str, ...],
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path | None,
    out: Path | None,
) -> None:
    """Write the tables NAMES (default: all of them: t1-t8 and ours)."""
    from sartm.report import tables  # pandas and matplotlib: 1.7 s on every `sartm` command

    reading = _Reading(params_path, preset, results_root)
    chosen = list(names) or runs.table_names(reading.params, reading.preset)
    out = out or paths.tables_dir(reading.results)

    def make(name: str, mapping: dict[str, list[str]]) -> list[Path]:
        return tables.make(name, mapping, results_root=reading.results, out_dir=out)

    reading.make_each(chosen, run_options, make)


@report.command("figures")
@click.argument("names", nargs=-1)
@_options
@click.option(
    "--data",
    "data_root",
    type=click.Path(path_type=Path),
    default=paths.DATA,
    help="Data folder (the processed datasets' inputs and ground truth).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for <name>.png and .pdf [default: results/<preset>/figures].",
)
def figures_cmd(
    names: tuple[str, ...],
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path | None,
    data_root: Path,
    out: Path | None,
) -> None:
    """Draw the figures NAMES (default: all: f4-f8 and the training curves)."""
    from sartm.report import figures  # matplotlib: see tables_cmd

    reading = _Reading(params_path, preset, results_root)
    chosen = list(names) or runs.figure_names(reading.params, reading.preset)
    out = out or paths.figures_dir(reading.results)

    def make(name: str, mapping: dict[str, list[str]]) -> list[Path]:
        return figures.make(
            name, mapping, results_root=reading.results, data_root=data_root, out_dir=out
        )

    reading.make_each(chosen, run_options, make)


@report.command("summary")
@_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="The Markdown summary; summary.html and scores.json are written beside it "
    "[default: results/<preset>/summary.md].",
)
def summary_cmd(
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path | None,
    out: Path | None,
) -> None:
    """Write the paper-vs-reproduction summary (headline numbers, flagged rows marked), and
    scores.json beside it (every job's test mIoU, DVC's metrics file)."""
    from sartm.report import summary  # see tables_cmd

    reading = _Reading(params_path, preset, results_root)
    out = out or paths.summary_file(reading.results)

    def make() -> list[Path]:
        if run_options:
            mapping = runs.parse_run_options(run_options)
        else:
            mapping = runs.job_map(runs.summary_runs(), reading.params, reading.preset)
        written = summary.write(mapping, results_root=reading.results, out=out)
        scores = write_scores(mapping, reading.results, out.with_name("scores.json"))
        return [*summary.files(written), scores]

    for path in _guard(make):
        click.echo(path)


@report.command("list")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
def list_cmd(params_path: Path, preset: str | None) -> None:
    """Every table and figure, and the training jobs it reads."""

    def show() -> list[Path]:
        params = cfgmod.load_params(params_path)
        for name in [*runs.table_names(params, preset), *runs.figure_names(params, preset)]:
            mapping = runs.item_jobs(name, params, preset)
            jobs = sorted({r for ids in mapping.values() for r in ids})
            click.echo(f"{name}: {runs.item_spec(name)[1]['title']}")
            click.echo(f"    {len(jobs)} job(s): {', '.join(jobs)}")
        return []

    _guard(show)
