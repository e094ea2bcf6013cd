"""The whole loop learns: on synthetic FMB with the micro model, test mIoU ends well above chance."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from sartm import config as cfgmod
from sartm.cli import cli
from sartm.engine.evaluate import evaluate
from sartm.engine.train import train


def chance_miou(pixel_counts: list[int]) -> float:
    """The better of two label-blind predictors: always the majority class, or uniform guesses
    (expected IoU of class c: (p_c / C) / (p_c + 1/C - p_c / C))."""
    total = sum(pixel_counts)
    p = [n / total for n in pixel_counts]
    c = len(p)
    uniform = sum((q / c) / (q + 1 / c - q / c) for q in p) / c
    return max(max(p) / c, uniform)


@pytest.mark.slow
def test_test_miou_rises_well_above_chance(tmp_path):
    data = tmp_path / "data" / "processed" / "synth-fmb"
    params = str(cfgmod.PROJECT_ROOT / "params.yaml")
    result = CliRunner().invoke(
        cli,
        ["data", "synth", "synth-fmb", "--out", str(data), "--width", "96", "--params", params,
         "--samples-train", "32", "--samples-test", "16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = cfgmod.resolve(
        cfgmod.load_params(params),
        dataset="fmb",
        run="no-language",
        preset="ci",
        overrides=[
            f"data.root={tmp_path / 'data'}",
            "data.max_samples=null",
            "model.backbone=test_hiera_micro",
            "loss.w2=0",  # cross entropy on S0 and S1 only: the fastest signal on CPU
            "train.epochs=30",
            "train.batch_size=4",
            "train.lr=0.001",
            "train.val_every=10",
            "data.crop_size=64",
            "data.eval_size=96",
            "eval.modality_robustness=false",
            "eval.tsne_pixels=0",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracking.artifact_root={tmp_path / 'mlartifacts'}",
        ],
    )
    out = train(cfg, results_root=tmp_path / "results", quiet=True)
    metrics = evaluate(cfg, results_root=tmp_path / "results", quiet=True)
    meta = json.loads((data / "meta.json").read_text())
    chance = chance_miou(meta["class_pixel_counts"]["test"])
    with (tmp_path / "results" / "train" / "fmb" / "no-language" / "history.csv").open() as fh:
        curve = [float(row["test_miou"]) for row in csv.DictReader(fh) if row["test_miou"]]
    assert len(curve) == 3 and curve[-1] > curve[0]  # evaluated at epochs 10, 20, 30: it rises
    assert curve[-1] == pytest.approx(out["final"]["test_miou"])
    print(f"test mIoU {metrics['test']['miou']:.4f} (curve {curve}), chance {chance:.4f}")
    assert metrics["test"]["miou"] >= 2 * chance, (metrics["test"]["miou"], chance, curve)
