"""`sartm weights ...`: list, download and verify the SAM2 checkpoints."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

DIR_HELP = "Weights folder (default: $SARTM_WEIGHTS, else weights/)."


@click.group()
def weights() -> None:
    """SAM2 checkpoints: official URLs, local cache, SHA-256 checks."""


def _dir(directory: Path | None) -> Path:
    # torch and sam2: kept out of every `sartm` command's start-up
    from sartm.model.sam2_weights import weights_dir

    return directory or weights_dir()


@weights.command("list")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help=DIR_HELP)
def list_cmd(directory: Path | None) -> None:
    """Known checkpoints: name, backbone, size, cached or not, URL."""
    # torch and sam2: kept out of every `sartm` command's start-up
    from sartm.model.sam2_weights import WEIGHTS

    folder = _dir(directory)
    click.echo(f"weights folder: {folder}")
    click.echo(f"{'name':24s} {'backbone':16s} {'size':>9s}  {'cached':10s} url")
    for e in WEIGHTS.values():
        path = folder / e.filename
        size = f"{path.stat().st_size / 2**20:.0f} MiB" if path.is_file() else f"~{e.approx_mb} MB"
        cached = "yes" if path.is_file() else "no"
        click.echo(f"{e.name:24s} {e.backbone:16s} {size:>9s}  {cached:10s} {e.url}")


@weights.command("download")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help=DIR_HELP)
@click.option("--force", is_flag=True, help="Download again even if the file is there.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def download_cmd(
    names: tuple[str, ...], directory: Path | None, force: bool, progress: bool
) -> None:
    """Fetch checkpoints by name (`sam2_hiera_base_plus`) or backbone (`sam2_hiera_b+`)."""
    # torch and sam2: kept out of every `sartm` command's start-up
    from sartm.model.sam2_weights import download

    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = download(name, directory=_dir(directory), force=force, progress=progress)
        for w in caught:
            click.echo(f"WARNING: {w.message}", err=True)
        click.echo(f"{result.status}: {result.message}")


@weights.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME...]")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None, help=DIR_HELP)
def verify_cmd(names: tuple[str, ...], directory: Path | None) -> None:
    """Re-hash cached checkpoints (all that are there, or NAME...); exit 1 on a changed file."""
    # torch and sam2: kept out of every `sartm` command's start-up
    from sartm.model.sam2_weights import WEIGHTS, WeightsError, entry, verify

    folder = _dir(directory)
    todo = [entry(n).name for n in names] or [
        e.name for e in WEIGHTS.values() if (folder / e.filename).is_file()
    ]
    if not todo:
        click.echo(f"no checkpoints in {folder}")
        return
    failed = 0
    for name in todo:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the status line below says it
                result = verify(name, directory=folder)
        except WeightsError as exc:
            click.echo(f"missing: {exc}", err=True)
            failed += 1
            continue
        label = "WARNING " if result.status == "mirror-mismatch" else ""
        click.echo(f"{label}{result.status}: {result.message}")
        failed += result.failed
    if failed:
        raise click.ClickException(f"{failed} checkpoint(s) failed verification")
