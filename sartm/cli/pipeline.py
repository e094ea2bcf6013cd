"""`sartm pipeline ...`: run the Snakemake pipeline, and the stages of the generated dvc.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from sartm import config as cfgmod
from sartm import paths
from sartm.pipeline import configs as run_configs
from sartm.pipeline import dvcgen
from sartm.pipeline.plan import Plan


@click.group()
def pipeline() -> None:
    """The whole pipeline (Snakemake), its DVC twin (dvc.yaml) and their set-up stages."""


PROFILE = "workflow/profiles/default"


def _snakemake(args: list[str]) -> int:
    """Snakemake from this environment, in the project root, with the project's default profile
    (Snakemake looks for profiles/default beside the Snakefile only; ours is under workflow/)."""
    command = [sys.executable, "-m", "snakemake", "--workflow-profile", PROFILE, *args]
    click.echo(" ".join(command[1:]), err=True)
    return subprocess.call(command)


@pipeline.command("demo", context_settings={"ignore_unknown_options": True})
@click.option("--cores", default="all", help="CPU cores for Snakemake (a number or 'all').")
@click.option("--preset", default="demo", help="Preset to run (demo: offline, synthetic).")
@click.option(
    "--report/--no-report",
    "make_report",
    default=True,
    help="Also build the browsable report results/<preset>/report.zip.",
)
@click.argument("snakemake_args", nargs=-1, type=click.UNPROCESSED)
def demo(cores: str, preset: str, make_report: bool, snakemake_args: tuple[str, ...]) -> None:
    """Run every stage (target `all`) with Snakemake's default profile, then the report.

    Extra arguments go to Snakemake, e.g. `sartm pipeline demo --cores 2 -- --dry-run`.
    """
    common = ["--cores", cores, "--config", f"preset={preset}"]
    code = _snakemake(["all", *common, *snakemake_args])
    if (
        code == 0
        and make_report
        and "--dry-run" not in snakemake_args
        and "-n" not in snakemake_args
    ):
        code = _snakemake(["--report", str(paths.report_file(paths.results_root(preset))), *common])
    if code:
        raise SystemExit(code)


@pipeline.command("report")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
@click.option(
    "--out",
    default=None,
    help="Report file (.zip or .html) [default: results/<preset>/report.zip].",
)
def report_cmd(preset: str | None, out: str | None) -> None:
    """Build Snakemake's browsable report of every table and figure (after a run)."""
    preset = preset or cfgmod.load_params()["preset"]
    out = out or str(paths.report_file(paths.results_root(preset)))
    args = ["--report", out, "--config", f"preset={preset}"]
    code = _snakemake(args)
    if code:
        raise SystemExit(code)


@pipeline.command("dvc-yaml")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--out", type=click.Path(path_type=Path), default="dvc.yaml")
@click.option("--check", is_flag=True, help="Only check that --out is up to date (exit 1 if not).")
def dvc_yaml(params_path: Path, out: Path, check: bool) -> None:
    """Write dvc.yaml from params.yaml (the same stages and paths as the Snakefile)."""
    params = cfgmod.load_params(params_path)
    try:
        if check:
            if dvcgen.is_stale(params, out):
                raise click.ClickException(f"{out} is stale: run `sartm pipeline dvc-yaml`")
            click.echo(f"{out} is up to date")
            return
        dvcgen.write(params, out)
    except dvcgen.DvcGenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out}: {len(dvcgen.stages(params))} stages")


@pipeline.command("dvc-lock")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
def dvc_lock(params_path: Path) -> None:
    """Record in dvc.lock what Snakemake made, so that `dvc repro` has nothing to redo.

    Snakemake runs it after every successful run of the preset dvc.yaml was generated for."""
    params = cfgmod.load_params(params_path)
    try:
        done = dvcgen.record_lock(params)
    except dvcgen.DvcGenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"dvc.lock: {len(done)} of {len(dvcgen.stages(params))} stages recorded")


@pipeline.command("plots")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for index.html [default: results/<preset>/plots].",
)
def plots_cmd(params_path: Path, out: Path | None) -> None:
    """Training loss and mIoU curves, one pair per table (`dvc plots show`, offline)."""
    params = cfgmod.load_params(params_path)
    out = out or paths.results_root(params["preset"]) / "plots"
    try:
        page = dvcgen.show_plots(params, out)
    except dvcgen.DvcGenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{page}: {len(dvcgen.plots(params))} plots")


@pipeline.command("jobs")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
def jobs(params_path: Path, preset: str | None) -> None:
    """The training jobs of the run list: run id, config hash, and the runs each one serves."""
    plan = Plan(cfgmod.load_params(params_path), preset or "")
    served: dict[str, list[str]] = {}
    for aliases in plan.aliases:
        for name, run_id in aliases.items():
            served.setdefault(run_id, []).append(name)
    for cfg in plan.jobs.values():
        names = sorted(set(served.get(cfg.run_id, [])))
        click.echo(f"{cfg.run_id}\t{cfg.hash()}\t{cfg.data.dataset}\t{', '.join(names)}")


# --- the set-up stages of dvc.yaml ----------------------------------------------------------


@pipeline.command("configs")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
def configs(params_path: Path, preset: str | None) -> None:
    """Write results/<preset>/configs/<run_id>.yaml for every job (only where it changed).

    The first stage of dvc.yaml: it refuses to go on when dvc.yaml was generated for other jobs
    (another preset in params.yaml), since DVC would then run the wrong stage graph."""
    params = cfgmod.load_params(params_path)
    if preset is None and dvcgen.DVC_FILE.is_file() and dvcgen.is_stale(params):
        raise click.ClickException(
            f"{dvcgen.DVC_FILE} does not match preset {params['preset']!r} of {params_path} "
            "(each preset has its own jobs): run `sartm pipeline dvc-yaml`, then `dvc repro`"
        )
    written = run_configs.write_configs(Plan(params, preset or ""))
    changed = [p for p, rewritten in written.items() if rewritten]
    for path in changed:
        click.echo(f"{path}: written")
    click.echo(f"{len(written)} run configs, {len(changed)} changed")


@pipeline.command("config")
@click.argument("run_id")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml")
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="[default: results/<preset>/configs/<RUN_ID>.yaml]",
)
def config_cmd(run_id: str, params_path: Path, preset: str | None, out: Path | None) -> None:
    """Write the resolved configuration of one training job (what `sartm train --config` reads)."""
    plan = Plan(cfgmod.load_params(params_path), preset or "")
    cfg, path = run_configs.write_config(plan, run_id, out)
    click.echo(f"{path}: {cfg.run_id}, preset {cfg.preset}, config hash {cfg.hash()}")
