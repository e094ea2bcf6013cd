"""`sartm report tables|figures|summary|list`: the paper's tables and figures from the results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from sartm import config as cfgmod
from sartm import paths


@click.group()
def report() -> None:
    """Tables, figures and the summary from results/eval/<dataset>/<run>/metrics.json."""


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
            default=paths.RESULTS,
            help="Results folder (results/eval/<run>/metrics.json).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _mapping(
    names: list[str], run_options: tuple[str, ...], params_path: Path, preset: str | None
) -> dict[str, list[str]]:
    from sartm.report import runs

    if run_options:
        return runs.parse_run_options(run_options)
    params = cfgmod.load_params(params_path)
    out: dict[str, list[str]] = {}
    for name in names:
        out.update(runs.item_jobs(name, params, preset))
    return out


def _guard(action: Callable[[], list[Path]]) -> list[Path]:
    from sartm.report.runs import ReportError

    try:
        return action()
    except (ReportError, cfgmod.ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@report.command("tables")
@click.argument("names", nargs=-1)
@_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=paths.tables_dir(),
    help="Folder for <name>.md, .csv, .tex and .html.",
)
def tables_cmd(
    names: tuple[str, ...],
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path,
    out: Path,
) -> None:
    """Write the tables NAMES (default: all of them: t1-t8 and ours)."""
    from sartm.report import runs, tables

    chosen = list(names) or runs.table_names(cfgmod.load_params(params_path), preset)

    def make() -> list[Path]:
        written = []
        for name in chosen:
            mapping = _mapping([name], run_options, params_path, preset)
            written += tables.make(name, mapping, results_root=results_root, out_dir=out)
        return written

    for path in _guard(make):
        click.echo(path)


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
    default=paths.figures_dir(),
    help="Folder for <name>.png and .pdf.",
)
def figures_cmd(
    names: tuple[str, ...],
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path,
    data_root: Path,
    out: Path,
) -> None:
    """Draw the figures NAMES (default: all: f4-f8 and the training curves)."""
    from sartm.report import figures, runs

    chosen = list(names) or runs.figure_names(cfgmod.load_params(params_path), preset)

    def make() -> list[Path]:
        written = []
        for name in chosen:
            mapping = _mapping([name], run_options, params_path, preset)
            written += figures.make(
                name, mapping, results_root=results_root, data_root=data_root, out_dir=out
            )
        return written

    for path in _guard(make):
        click.echo(path)


@report.command("summary")
@_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=paths.RESULTS / "summary.md",
    help="The summary file.",
)
def summary_cmd(
    run_options: tuple[str, ...],
    params_path: Path,
    preset: str | None,
    results_root: Path,
    out: Path,
) -> None:
    """Write the paper-vs-reproduction summary (headline numbers, flagged rows marked)."""
    from sartm.report import runs, summary

    def make() -> list[Path]:
        if run_options:
            mapping = runs.parse_run_options(run_options)
        else:
            params = cfgmod.load_params(params_path)
            mapping = runs.job_map(summary.summary_runs(), params, preset)
        return [summary.write(mapping, results_root=results_root, out=out)]

    for path in _guard(make):
        click.echo(path)


@report.command("list")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
def list_cmd(params_path: Path, preset: str | None) -> None:
    """Every table and figure, and the training jobs it reads."""
    from sartm.report import runs

    def show() -> list[Path]:
        params = cfgmod.load_params(params_path)
        for name in [*runs.table_names(params, preset), *runs.figure_names(params, preset)]:
            mapping = runs.item_jobs(name, params, preset)
            jobs = sorted({r for ids in mapping.values() for r in ids})
            click.echo(f"{name}: {runs.item_spec(name)[1]['title']}")
            click.echo(f"    {len(jobs)} job(s): {', '.join(jobs)}")
        return []

    _guard(show)
