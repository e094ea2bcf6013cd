"""`sartm data ...`: download, extract, prepare and synthesise datasets."""

from __future__ import annotations

from pathlib import Path

import click

from sartm import paths
from sartm.cli.common import resolve_from_options
from sartm.data import builtin


@click.group()
def data() -> None:
    """Get datasets into the common layout (data/processed/<name>/)."""


# The data modules are imported by the commands that use them: together 0.35 s (PIL, tqdm, http)
# that every other `sartm` command would pay at start-up.


def _limit_options(command):
    """--max-expand-gb / --max-ratio: how far an archive may expand (decompression bombs)."""
    from sartm.data.extract import DEFAULT_MAX_EXPAND_GB, DEFAULT_MAX_RATIO

    command = click.option(
        "--max-ratio",
        type=click.FloatRange(min=1),
        default=DEFAULT_MAX_RATIO,
        help="Refuse an archive that expands more than this many times its size (checked from "
        "32 MiB of output).",
    )(command)
    return click.option(
        "--max-expand-gb",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_MAX_EXPAND_GB,
        help="Refuse an archive that expands to more than this many GB.",
    )(command)


@data.command("download")
@click.argument("dataset", type=click.Choice(builtin.names()))
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An archive you already downloaded (repeatable: FMB has train.zip and test.zip).",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=paths.DATA,
    help="Data folder: archives go to ROOT/archives/<dataset>, the extraction to "
    "ROOT/raw/<dataset>.",
)
@click.option(
    "--mirror", default=None, help="Which published location to use (default: the first)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Extract again over a raw folder that sartm extracted (never over one of your own).",
)
@_limit_options
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def download_cmd(
    dataset: str,
    archives: tuple[Path, ...],
    root: Path,
    mirror: str | None,
    force: bool,
    max_expand_gb: float,
    max_ratio: float,
    progress: bool,
) -> None:
    """Fetch (or take --archive), verify and safely extract DATASET into ROOT/raw/<dataset>."""
    from sartm.data.download import download
    from sartm.data.extract import Limits

    download(
        dataset,
        root=root,
        archives=archives,
        mirror=mirror,
        force=force,
        progress=progress,
        log=click.echo,
        limits=Limits(max_expand_gb, max_ratio),
    )


@data.command("extract")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder that will hold the archive's contents (created atomically).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an --out folder that sartm extracted (never one of your own).",
)
@_limit_options
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def extract_cmd(
    archive: Path, out: Path, force: bool, max_expand_gb: float, max_ratio: float, progress: bool
) -> None:
    """Safely extract a zip or tar(.gz/.bz2/.xz) ARCHIVE into --out."""
    from sartm.data.extract import Limits, safe_extract

    safe_extract(
        archive, out, force=force, progress=progress, limits=Limits(max_expand_gb, max_ratio)
    )
    click.echo(f"{out}: extracted from {archive}")


@data.command("prepare")
@click.argument("dataset")
@click.option(
    "--raw",
    type=click.Path(path_type=Path),
    default=None,
    help="Original layout folder [default: ROOT/raw/<dataset>].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Common layout folder [default: ROOT/processed/<dataset>].",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=paths.DATA,
    help="Data folder for the defaults of --raw and --out.",
)
@click.option(
    "--classes",
    "classes_file",
    type=click.Path(path_type=Path),
    default=None,
    help="custom datasets: YAML or JSON list of {name, color: [r, g, b]}.",
)
@click.option("--name", default=None, help="custom datasets: the NAME of custom-NAME.")
@click.option(
    "--force",
    is_flag=True,
    help="Prepare again over a complete output that sartm wrote (never over a folder of yours).",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def prepare_cmd(
    dataset: str,
    raw: Path | None,
    out: Path | None,
    root: Path,
    classes_file: Path | None,
    name: str | None,
    force: bool,
    progress: bool,
) -> None:
    """Convert DATASET (a built-in one: mfnet, pst900, fmb, ...; custom-NAME or custom --name
    NAME) from its original layout to the common layout."""
    from sartm.data.layouts import prepare

    if dataset == "custom":
        if not name:
            raise click.UsageError(
                "custom datasets need a name: `custom --name NAME` or custom-NAME"
            )
        dataset = f"custom-{name}"
    elif name:
        raise click.UsageError("--name only applies to `prepare custom`")
    raw = raw if raw is not None else paths.raw_dir(dataset, root)
    out = out if out is not None else paths.processed_dir(dataset, root)
    result = prepare(
        dataset, raw=raw, out=out, classes_file=classes_file, force=force, progress=progress
    )
    counts = ", ".join(f"{split} {n}" for split, n in sorted(result.splits.items()))
    if result.already:
        click.echo(f"{out}: already prepared ({counts}); use --force to prepare again")
        return
    subsets = ", ".join(f"{k} {n}" for k, n in sorted(result.subsets.items()))
    click.echo(
        f"{out}: prepared {dataset} ({counts})" + (f"; subsets: {subsets}" if subsets else "")
    )
    if result.ignored:
        click.echo(f"{raw}: {result.ignored} image(s) listed in no split were left out")


@data.command("synth")
@click.argument("name", type=click.Choice(builtin.stand_in_names()))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Common layout folder [default: <data.root>/processed/<name>].",
)
@click.option("--samples-train", type=int, default=None, help="[default: synth.samples.train]")
@click.option(
    "--samples-val", type=int, default=None, help="[default: synth.samples.val; MFNet only]"
)
@click.option("--samples-test", type=int, default=None, help="[default: synth.samples.test]")
@click.option(
    "--width", type=int, default=None, help="Image width in pixels [default: synth.width]."
)
@click.option("--seed", type=int, default=None, help="[default: synth.seed]")
@click.option(
    "--params",
    "params_path",
    type=click.Path(path_type=Path),
    default="params.yaml",
    help="Settings file for the defaults.",
)
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a setting, e.g. --set synth.width=128 (repeatable).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace another dataset that sartm wrote at --out (a stand-in NAME is made again "
    "without it; a folder of yours is never replaced).",
)
def synth_cmd(
    name: str,
    out: Path | None,
    samples_train: int | None,
    samples_val: int | None,
    samples_test: int | None,
    width: int | None,
    seed: int | None,
    params_path: Path,
    preset: str | None,
    overrides: tuple[str, ...],
    force: bool,
) -> None:
    """Generate the SYNTHETIC stand-in NAME (deterministic: same seed, same bytes)."""
    from sartm.data.synth import generate

    logical = name.removeprefix(builtin.SYNTHETIC_PREFIX)
    cfg = resolve_from_options(params_path, preset, logical, None, None, overrides)
    samples = dict(cfg.synth.samples)
    for split, n in (("train", samples_train), ("val", samples_val), ("test", samples_test)):
        if n is not None:
            samples[split] = n
    out = out if out is not None else paths.processed_dir(name, Path(cfg.data.root))
    result = generate(
        name,
        out,
        samples=samples,
        width=width if width is not None else cfg.synth.width,
        seed=seed if seed is not None else cfg.synth.seed,
        force=force,
    )
    counts = ", ".join(f"{split} {n}" for split, n in result["splits"].items())
    w, h = result["size"]
    click.echo(f"{out}: generated SYNTHETIC {name} ({counts}; {w}x{h}) in {result['seconds']} s")
