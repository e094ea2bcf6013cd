"""`sartm embed DATASET`: the CLIP text-teacher cache of one dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from sartm import config as cfgmod
from sartm import paths
from sartm.cli.common import resolve_from_options


def _logical(params_path: Path, config_path: Path | None, dataset: str) -> str:
    """The logical dataset whose settings apply: `synth-pst900` -> pst900, `custom-mine` -> mine
    (declared under params.yaml's `datasets:`)."""
    if config_path is not None:
        return cfgmod.load_config(config_path).dataset
    name = dataset.removeprefix(cfgmod.SYNTHETIC_PREFIX).removeprefix(cfgmod.CUSTOM_PREFIX)
    known = cfgmod.logical_datasets(cfgmod.load_params(params_path))
    if name not in known:
        raise click.ClickException(
            f"{dataset}: not a dataset of {params_path} (known: {', '.join(known)}); declare your "
            "own under `datasets:` so that its settings are its own"
        )
    return name


@click.command()
@click.argument("dataset")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cache file (default: <data.root>/text/<data source>.pt, where training reads it).",
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(path_type=Path),
    default="params.yaml",
    help="Settings file (validated against the schema).",
)
@click.option("--preset", default=None, help="Preset (default: the one in params.yaml).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A resolved run config file instead of params.yaml.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a setting, e.g. --set text.pretrained=null (repeatable).",
)
def embed(
    dataset: str,
    out: Path | None,
    params_path: Path,
    preset: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Encode DATASET's class names with the CLIP text encoder of `text` in params.yaml.

    DATASET is a logical dataset (mfnet, pst900, fmb: the preset picks real or synthetic data),
    a data source (synth-pst900, ...) or a prepared custom dataset (its meta.json classes).
    """
    from sartm import text as textmod

    logical = _logical(params_path, config_path, dataset)
    cfg = resolve_from_options(params_path, preset, logical, None, config_path, overrides)
    source = cfg.data.dataset if dataset == logical else dataset
    out = out or paths.text_cache(source, Path(cfg.data.root))  # where training reads it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", textmod.RandomTextTeacherWarning)  # echoed below
        cache = textmod.embed_dataset(source, cfg.text, data_root=Path(cfg.data.root))
    textmod.save_text_cache(cache, out)
    weights = cache["pretrained"] or "random weights"
    click.echo(
        f"{out}: {len(cache['classes'])} classes x {cache['embeddings'].shape[1]} dims "
        f"({cache['model']}, {weights}) for {source}"
    )
    if cache["random_weights"]:
        click.echo(
            f"WARNING: the text teacher has RANDOM weights (seed {cache['seed']}); "
            "L_se distils noise and the language ablation is not meaningful.",
            err=True,
        )
