"""Options shared by every command that reads params.yaml."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from sartm import config as cfgmod


def resolve_from_options(
    params_path: Path,
    preset: str | None,
    dataset: str,
    run: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> cfgmod.Config:
    """The one way the CLI turns options into a Config."""
    if run and "/" in run:  # `--run pst900/full` is the same as `--dataset pst900 --run full`
        dataset, run = run.split("/", 1)
    if config_path is not None:
        return cfgmod.load_config(config_path, overrides)
    params = cfgmod.load_params(params_path)
    return cfgmod.resolve(params, dataset=dataset, run=run, preset=preset, overrides=overrides)


def config_options(with_run: bool = False) -> Callable:
    """Decorator: --params / --preset / --dataset / --config / --set (and --run), giving `cfg`."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(
            *args, params_path, preset, dataset, config_path, overrides, run=None, **kwargs
        ):
            cfg = resolve_from_options(params_path, preset, dataset, run, config_path, overrides)
            return func(*args, cfg=cfg, **kwargs)

        options = [
            click.option(
                "--params",
                "params_path",
                type=click.Path(path_type=Path),
                default="params.yaml",
                help="Settings file (validated against the schema).",
            ),
            click.option(
                "--preset", default=None, help="Preset (default: the one in params.yaml)."
            ),
            click.option(
                "--dataset",
                default="mfnet",
                help="Logical dataset (mfnet, pst900, fmb, or one of params.yaml's `datasets:`); "
                "the preset maps the paper's to real or synthetic data.",
            ),
            click.option(
                "--config",
                "config_path",
                type=click.Path(path_type=Path),
                default=None,
                help="A resolved run config file instead of params.yaml.",
            ),
            click.option(
                "--set",
                "overrides",
                multiple=True,
                metavar="KEY=VALUE",
                help="Override a setting, e.g. --set train.epochs=2 (repeatable).",
            ),
        ]
        if with_run:
            options.append(
                click.option(
                    "-r",  # torchrun's parser takes `--run` for its own `--run-path`
                    "--run",
                    default=None,
                    help="A run of params.yaml's run list: NAME or DATASET/NAME "
                    "(under torchrun write -r).",
                )
            )
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate
