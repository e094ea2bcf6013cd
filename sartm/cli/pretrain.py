"""`sartm pretrain`: make the offline SAM2 stand-in (the demo's pretrained foundation model)."""

from __future__ import annotations

from pathlib import Path

import click

from sartm import config as cfgmod


@click.command("pretrain")
@click.option(
    "--params",
    "params_path",
    type=click.Path(path_type=Path),
    default="params.yaml",
    help="Settings file (its `pretrain:` section).",
)
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint (default: pretrain.out).",
)
@click.option("--force", is_flag=True, help="Replace an existing stand-in at --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(
    params_path: Path, preset: str | None, out: Path | None, force: bool, quiet: bool
) -> None:
    """Pretrain the demo-size SAM2 on synthetic RGB scenes; writes a checkpoint in the official
    SAM2 layout, its SHA-256 (`.sha256`) and a summary (`.json`). SYNTHETIC: not Meta's weights."""
    # torch: kept out of every `sartm` command's start-up
    from sartm.pretrain import PretrainSettings, pretrain_stand_in

    settings = cfgmod.pretrain_settings(cfgmod.load_params(params_path), preset)
    default_out = Path(settings.pop("out"))
    out = out or default_out
    if out.exists() and not force:
        raise click.ClickException(f"{out}: exists; pass --force to replace it")
    summary = pretrain_stand_in(
        PretrainSettings(**{**settings, "sources": tuple(settings["sources"])}),
        out,
        quiet=quiet,
    )
    click.echo(
        f"{out}: SYNTHETIC SAM2 stand-in ({summary['settings']['backbone']}, "
        f"{summary['settings']['steps']} steps, final loss {summary['final_loss']:.3f}, "
        f"{summary['seconds']:.0f} s), sha256 {summary['sha256']}"
    )
