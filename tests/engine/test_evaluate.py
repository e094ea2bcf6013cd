"""Evaluation: metrics.json in the agreed shape, checked against an independent recomputation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import confusion_matrix

import sartm
from sartm.cli import cli
from sartm.config import load_config, save_config
from sartm.data.common import read_manifest
from sartm.engine.evaluate import EvaluationError, evaluate, predict_probs
from sartm.engine.metrics import segmentation_metrics
from sartm.engine.train import train

CONTRACT_KEYS = {
    "run_id",
    "run",
    "dataset",
    "source",
    "preset",
    "synthetic",
    "config_hash",
    "checkpoint",
    "classes",
    "test",
    "subsets",
    "robustness",
    "params",
    "train_time_s",
    "provenance",
}
SCORE_KEYS = {"miou", "macc", "mf1", "pixel_acc", "iou", "acc", "f1"}


def _independent_scores(data_dir, ids, pred_dir, num_classes):
    """Confusion matrix by scikit-learn from the written PNGs and the dataset's label files."""
    rows = {r["id"]: r for r in read_manifest(data_dir)}
    truth, guess = [], []
    for sample_id in ids:
        label = np.array(Image.open(data_dir / rows[sample_id]["label"]))
        pred = np.array(Image.open(pred_dir / f"{sample_id}.png"))
        assert pred.shape == label.shape  # predictions were cut back to the original size
        truth.append(label.ravel())
        guess.append(pred.ravel())
    cm = confusion_matrix(np.concatenate(truth), np.concatenate(guess), labels=range(num_classes))
    return segmentation_metrics(cm)


def test_metrics_json_matches_an_independent_recomputation(trained_mfnet, data_root):
    cfg, results = trained_mfnet
    metrics = evaluate(cfg, results_root=results, quiet=True)
    out_dir = results / "eval" / "mfnet" / "no-language"
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics
    assert CONTRACT_KEYS <= set(metrics) and SCORE_KEYS == set(metrics["test"])
    assert metrics["run_id"] == "mfnet/no-language" and metrics["source"] == "synth-mfnet"
    assert metrics["synthetic"] is True and metrics["config_hash"] == cfg.hash()
    assert metrics["checkpoint"]["kind"] == "best"  # MFNet: selected on val, reported on test
    assert "test_best" not in metrics
    assert metrics["provenance"]["torch"] == torch.__version__.split("+")[0]
    assert {"git_commit", "git_dirty", "device"} <= set(metrics["provenance"])
    assert len(metrics["test"]["iou"]) == len(metrics["classes"]) == 9

    data_dir = data_root / "processed" / "synth-mfnet"
    test_rows = [r for r in read_manifest(data_dir) if r["split"] == "test"]
    ids = [r["id"] for r in test_rows]
    assert sorted(p.stem for p in (out_dir / "pred").iterdir()) == sorted(ids)
    expected = _independent_scores(data_dir, ids, out_dir / "pred", 9)
    for key in SCORE_KEYS:
        assert metrics["test"][key] == pytest.approx(expected[key], abs=1e-9)
    palette = Image.open(out_dir / "pred" / f"{ids[0]}.png")
    assert palette.mode == "P" and palette.getpalette()[3:6] == [64, 0, 128]  # MFNet's car

    assert set(metrics["subsets"]) == {"day", "night"}
    for subset in ("day", "night"):
        sub_ids = [r["id"] for r in test_rows if r["subset"] == subset]
        assert sub_ids
        sub = _independent_scores(data_dir, sub_ids, out_dir / "pred", 9)
        assert metrics["subsets"][subset]["miou"] == pytest.approx(sub["miou"], abs=1e-9)

    assert set(metrics["robustness"]) == {"thermal_blanked", "rgb_blanked"}
    for scores in metrics["robustness"].values():
        assert set(scores) == SCORE_KEYS and 0 <= scores["miou"] <= 1
    assert metrics["robustness"]["thermal_blanked"] != metrics["test"]

    features = np.load(out_dir / "features.npz")
    assert features["features"].shape[0] == features["labels"].shape[0] == 60
    assert features["features"].ndim == 2 and set(features["labels"]) <= set(range(9))
    assert list(features["classes"]) == metrics["classes"]


def test_pst900_reports_last_and_the_authors_best_on_test(cfg_factory, tmp_path):
    cfg = cfg_factory("eval.modality_robustness=false", "eval.tsne_pixels=0", "train.epochs=3")
    results = tmp_path / "results"
    trained = train(cfg, results_root=results, quiet=True)
    metrics = evaluate(cfg, results_root=results, quiet=True)
    assert metrics["checkpoint"]["kind"] == "last" and metrics["checkpoint"]["epoch"] == 3
    assert metrics["checkpoint_test_best"]["epoch"] == trained["best_epoch"]
    assert metrics["test"]["miou"] == pytest.approx(trained["final"]["test_miou"])
    assert metrics["test_best"]["miou"] == pytest.approx(trained["best_miou"])
    assert "best-on-test" in json.dumps(metrics["protocol"]) or "test set" in json.dumps(
        metrics["protocol"]
    )
    # `sartm evaluate --checkpoint best.pt` gives the same numbers as test_best.
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    best = results / "train" / "pst900" / "no-language" / "best.pt"
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(
            cli, ["evaluate", "--config", str(config_file), "--checkpoint", str(best), "--quiet"]
        )
        assert result.exit_code == 0, result.output
        written = json.loads(open("results/ci/eval/pst900/no-language/metrics.json").read())
    assert written["test"]["miou"] == pytest.approx(metrics["test_best"]["miou"])
    assert f"mIoU {metrics['test_best']['miou']:.4f}" in result.output
    with pytest.raises(EvaluationError, match="train the run first"):
        evaluate(cfg, results_root=tmp_path / "empty", quiet=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(
        cli, ["evaluate", "--config", str(config_file), "--checkpoint", str(bad)]
    )
    assert result.exit_code != 0 and "bad.pt: not a readable sartm checkpoint" in result.output


# Evaluates the run of a config file and SIGKILLs itself right after the first prediction PNG.
KILL_AFTER_FIRST_PNG = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import sartm.engine.evaluate as ev
    from sartm.config import load_config

    real_save = ev.save_palette_png

    def save_then_die(*args):
        real_save(*args)
        os.kill(os.getpid(), signal.SIGKILL)

    ev.save_palette_png = save_then_die
    ev.evaluate(load_config(sys.argv[1]), results_root=Path(sys.argv[2]), quiet=True)
    """
)


def test_killed_evaluation_leaves_the_previous_outputs(trained_mfnet, tmp_path, data_root):
    cfg, trained = trained_mfnet
    results = tmp_path / "results"
    shutil.copytree(trained / "train", results / "train")
    first = cfg.with_overrides(
        [
            "eval.modality_robustness=false",
            "eval.tsne_pixels=20",
            "eval.save_predictions=2",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ]
    )
    evaluate(first, results_root=results, quiet=True)  # the previous, complete outputs
    out_dir = results / "eval" / "mfnet" / "no-language"
    files = lambda: {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}  # noqa: E731
    before = files()
    assert len(list((out_dir / "pred").iterdir())) == 2 and (out_dir / "features.npz").is_file()

    config_file = tmp_path / "config.yaml"
    save_config(
        first.with_overrides(["eval.save_predictions=100", "eval.tsne_pixels=0"]), config_file
    )
    path = [os.path.dirname(os.path.dirname(sartm.__file__)), os.environ.get("PYTHONPATH", "")]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_PNG, str(config_file), str(results)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert files() == before  # old metrics.json, predictions and features, untouched

    metrics = evaluate(load_config(config_file), results_root=results, quiet=True)
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics
    test_ids = [r["id"] for r in read_manifest(data_root / "processed" / "synth-mfnet")
                if r["split"] == "test"]  # fmt: skip
    assert sorted(p.stem for p in (out_dir / "pred").iterdir()) == sorted(test_ids)
    assert not (out_dir / "features.npz").exists()  # not asked for: the old one went with the rest
    assert [p.name for p in out_dir.parent.iterdir()] == ["no-language"]  # no staging folder left


class _PixelModel(torch.nn.Module):
    """A 1x1 convolution: equivariant to flips and (nearly) to rescaling."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 4, 1)

    def predict(self, rgb, thermal):
        return self.conv(torch.cat([rgb, thermal], 1))


def test_multi_scale_and_flip_average_in_the_input_frame():
    torch.manual_seed(0)
    model = _PixelModel()
    rgb, thermal = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    plain = model.predict(rgb, thermal).softmax(1)
    flipped = predict_probs(model, rgb, thermal, dtype=None, scales=(1.0,), flip=True) / 2
    torch.testing.assert_close(flipped, plain)  # flipped predictions were flipped back
    smooth_rgb = torch.nn.functional.avg_pool2d(rgb, 9, 1, 4)  # smooth: resizing loses little
    smooth_th = torch.nn.functional.avg_pool2d(thermal, 9, 1, 4)
    both = predict_probs(model, smooth_rgb, smooth_th, dtype=None, scales=(1.0, 2.0), flip=True)
    reference = model.predict(smooth_rgb, smooth_th).softmax(1)
    assert both.shape == reference.shape
    assert (both / 4 - reference).abs().max() < 0.05
    assert (both.argmax(1) == reference.argmax(1)).float().mean() > 0.95


def test_multi_scale_evaluation_runs_end_to_end(trained_mfnet):
    cfg, results = trained_mfnet
    cfg = cfg.with_overrides(
        [
            "eval.multi_scale=true",
            "eval.scales=[0.5,1.0]",
            "eval.modality_robustness=false",
            "eval.tsne_pixels=0",
            "eval.save_predictions=0",
        ]
    )
    # Evaluation settings may differ from training's: the run's own checkpoint is still used.
    metrics = evaluate(cfg, results_root=results, quiet=True)
    assert metrics["checkpoint"]["kind"] == "best"
    assert metrics["protocol"]["scales"] == [0.5, 1.0] and metrics["protocol"]["flip"] is True
    assert 0 <= metrics["test"]["miou"] <= 1
