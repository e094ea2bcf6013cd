"""`sartm predict` (masks for RGB-thermal pairs) and `sartm export` (one self-contained file)."""

from __future__ import annotations

from pathlib import Path

import click

_PATH = click.Path(path_type=Path)


@click.command("predict")
@click.option(
    "--checkpoint",
    type=_PATH,
    required=True,
    help="A training checkpoint (last.pt / best.pt) or an exported model file.",
)
@click.option("--rgb", type=_PATH, required=True, help="RGB image, or a folder of them.")
@click.option(
    "--thermal",
    type=_PATH,
    required=True,
    help="Thermal image, or a folder (pairs matched by file name).",
)
@click.option("--out", type=_PATH, required=True, help="Mask PNG (palette), or a folder.")
@click.option("--overlay", type=_PATH, default=None, help="Also write RGB + mask overlays here.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
def predict(
    checkpoint: Path, rgb: Path, thermal: Path, out: Path, overlay: Path | None, device: str
) -> None:
    """Segment RGB-thermal pairs; writes palette PNGs (pixel values are class ids)."""
    # torch: kept out of every `sartm` command's start-up
    from sartm.engine.predict import predict_paths

    written = predict_paths(checkpoint, rgb, thermal, out, overlay, device=device)
    click.echo(f"wrote {len(written)} mask(s) to {out}")
    if overlay is not None:
        click.echo(f"wrote {len(written)} overlay(s) to {overlay}")


@click.command("export")
@click.option("--checkpoint", type=_PATH, required=True, help="A training checkpoint.")
@click.option("--out", type=_PATH, required=True, help="The model file to write.")
def export(checkpoint: Path, out: Path) -> None:
    """Write one file with everything `sartm predict` needs (weights, config, classes, palette,
    normalisation); no base SAM2 checkpoint is needed to use it."""
    # torch: kept out of every `sartm` command's start-up
    from sartm.engine.predict import export as run_export

    info = run_export(checkpoint, out)
    click.echo(
        f"{info['path']}: {info['parameters']['total']:,} parameters, sha256 {info['sha256']}"
    )
