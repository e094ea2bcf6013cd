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

OVERFIT_EPOCHS = 600  # one step each (8 pairs, batch 8): 93.5 % mIoU when written


def chance_miou(pixel_counts: list[int]) -> float:
    """The better of two label-blind predictors: always the majority class, or uniform guesses
    (expected IoU of class c: (p_c / C) / (p_c + 1/C - p_c / C))."""
    total = sum(pixel_counts)
    p = [n / total for n in pixel_counts]
    c = len(p)
    uniform = sum((q / c) / (q + 1 / c - q / c) for q in p) / c
    return max(max(p) / c, uniform)


PARAMS = str(cfgmod.PROJECT_ROOT / "params.yaml")


def _synth(tmp_path, name: str, *, width: int, train: int, test: int):
    """A stand-in made by `sartm data synth` under tmp_path/data/processed/<name>."""
    data = tmp_path / "data" / "processed" / name
    made = CliRunner().invoke(
        cli,
        ["data", "synth", name, "--out", str(data), "--width", str(width), "--params", PARAMS,
         "--samples-train", str(train), "--samples-test", str(test)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return data


@pytest.mark.slow
def test_test_miou_rises_well_above_chance(tmp_path):
    data = _synth(tmp_path, "synth-fmb", width=96, train=32, test=16)
    cfg = cfgmod.resolve(
        cfgmod.load_params(PARAMS),
        dataset="fmb",
        run="no-language",
        preset="ci",
        overrides=[
            f"data.root={tmp_path / 'data'}",
            "data.max_samples=null",
            "model.backbone=test_hiera_micro",
            "model.checkpoint=null",
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


@pytest.mark.slow
def test_the_full_model_overfits_eight_training_pairs(tmp_path):
    """Every loss on (OHEM CE on S0 and S1, L_cr, L_se), no augmentation: the model must fit 8
    synthetic pairs almost perfectly. A broken loss, schedule, decoder or fusion cannot."""
    _synth(tmp_path, "synth-pst900", width=64, train=8, test=4)
    text = tmp_path / "text.pt"
    embedded = CliRunner().invoke(
        cli,
        ["embed", "synth-pst900", "--out", str(text), "--params", PARAMS, "--preset", "ci",
         "--set", f"data.root={tmp_path / 'data'}"],
    )  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    cfg = cfgmod.resolve(
        cfgmod.load_params(PARAMS),
        dataset="pst900",
        run="full",
        preset="ci",
        overrides=[
            f"data.root={tmp_path / 'data'}",
            "data.max_samples=null",
            "model.backbone=test_hiera_micro",
            "model.checkpoint=null",
            "train.epochs=" + str(OVERFIT_EPOCHS),
            "train.batch_size=8",
            "train.lr=0.003",
            "train.val_every=1000",
            "train.similarity_epochs=[]",
            "data.crop_size=64",
            "data.eval_size=64",
            "data.scale_range=[0.5625,0.5625]",  # short side 36 = r x crop 64: native scale
            "data.flip_p=0",
            "data.jitter_p=0",
            "data.blur_p=0",
            "eval.modality_robustness=false",
            "eval.tsne_pixels=0",
            "eval.save_predictions=0",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracking.artifact_root={tmp_path / 'mlartifacts'}",
        ],
    )
    assert cfg.loss.w1 > 0 and cfg.loss.w2 > 0 and cfg.loss.w3 > 0
    train(cfg, results_root=tmp_path / "results", quiet=True, text_cache=text)
    metrics = evaluate(cfg, split="train", results_root=tmp_path / "results", quiet=True)
    iou = metrics["train"]["iou"]
    print(f"train mIoU {metrics['train']['miou']:.4f}, per class {iou}")
    assert metrics["train"]["miou"] >= 0.90, iou
