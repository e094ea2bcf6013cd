"""Engine fixtures: tiny synthetic datasets made by `sartm data synth`, and the REAL run
configuration of params.yaml (ci preset) shrunk to a micro model and 64-pixel images."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sartm import config as cfgmod
from sartm.cli import cli

WIDTH = 64


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """synth-pst900 (train 8 / test 4) and synth-mfnet (train 8 / val 4 / test 6, day + night)."""
    root = tmp_path_factory.mktemp("data")
    runner = CliRunner()
    params = str(cfgmod.PROJECT_ROOT / "params.yaml")
    for name, counts in (
        ("synth-pst900", ["--samples-train", "8", "--samples-test", "4"]),
        ("synth-mfnet", ["--samples-train", "8", "--samples-val", "4", "--samples-test", "6"]),
    ):
        out = root / "processed" / name
        args = ["data", "synth", name, "--out", str(out), "--width", str(WIDTH), "--params", params]
        result = runner.invoke(cli, [*args, *counts])
        assert result.exit_code == 0, result.output
    return root


def make_cfg(
    tmp_path: Path,
    data_root: Path,
    *overrides: str,
    dataset: str = "pst900",
    run: str = "no-language",
    preset: str = "ci",
) -> cfgmod.Config:
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    base = [
        f"data.root={data_root}",
        "model.backbone=test_hiera_micro",
        "model.checkpoint=null",
        "train.val_every=1",
        "train.epochs=2",
        "train.batch_size=4",
        "train.warmup_epochs=1",
        f"data.crop_size={WIDTH}",
        f"data.eval_size={WIDTH}",
        "train.similarity_epochs=[1]",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_root={tmp_path / 'mlartifacts'}",
    ]
    return cfgmod.resolve(
        params, dataset=dataset, run=run, preset=preset, overrides=[*base, *overrides]
    )


@pytest.fixture
def cfg_factory(tmp_path, data_root):
    def factory(*overrides: str, **kwargs) -> cfgmod.Config:
        return make_cfg(tmp_path, data_root, *overrides, **kwargs)

    return factory


@pytest.fixture(scope="session")
def trained_mfnet(tmp_path_factory, data_root):
    """One trained synth-mfnet run (2 epochs; val split: best.pt selected on val), shared by the
    evaluation and prediction tests: (cfg, results root)."""
    from sartm.engine.train import train

    tmp = tmp_path_factory.mktemp("mfnet_run")
    cfg = make_cfg(
        tmp,
        data_root,
        "eval.save_predictions=100",
        "eval.tsne_pixels=60",
        dataset="mfnet",
        run="no-language",
    )
    train(cfg, results_root=tmp / "results", quiet=True)
    return cfg, tmp / "results"
