"""`sartm predict` / `sartm export`: image pairs in, palette masks out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sartm.cli import cli
from sartm.data.common import read_manifest
from sartm.engine import checkpointing as ck
from sartm.engine.evaluate import evaluate
from sartm.engine.modelio import ModelLoadError
from sartm.engine.predict import PredictError, Predictor, predict_paths


@pytest.fixture(scope="module")
def run(trained_mfnet, data_root):
    cfg, results = trained_mfnet
    evaluate(cfg, results_root=results, quiet=True)  # writes the reference predictions
    rows = [
        r for r in read_manifest(data_root / "processed" / "synth-mfnet") if r["split"] == "test"
    ]
    return {
        "best": results / "train" / "mfnet" / "no-language" / "best.pt",
        "pred": results / "eval" / "mfnet" / "no-language" / "pred",
        "data": data_root / "processed" / "synth-mfnet",
        "rows": rows[:3],
    }


def test_export_and_predict_agree_with_evaluation(run, tmp_path):
    runner = CliRunner()
    model_file = tmp_path / "model.pt"
    result = runner.invoke(
        cli, ["export", "--checkpoint", str(run["best"]), "--out", str(model_file)]
    )
    assert result.exit_code == 0, result.output
    exported = ck.load_checkpoint(model_file)  # one weights_only file with everything
    assert exported["format"] == "sartm-export" and len(exported["classes"]) == 9
    assert {"normalisation", "palette", "config"} <= set(exported)
    assert any(k.startswith("encoder.image_encoder.trunk") for k in exported["model"])

    rgb_dir, th_dir = tmp_path / "rgb", tmp_path / "thermal"
    rgb_dir.mkdir(), th_dir.mkdir()
    for row in run["rows"]:  # the evaluation's test images, as a user would pass them
        Image.open(run["data"] / row["rgb"]).save(rgb_dir / f"{row['id']}.png")
        Image.open(run["data"] / row["thermal"]).convert("RGB").save(th_dir / f"{row['id']}.png")
    first = run["rows"][0]["id"]
    for checkpoint in (run["best"], model_file):  # a training checkpoint or the export
        out = tmp_path / f"out_{checkpoint.stem}"
        result = runner.invoke(
            cli,
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--rgb",
                str(rgb_dir / f"{first}.png"),
                "--thermal",
                str(th_dir / f"{first}.png"),
                "--out",
                str(out / "one.png"),
                "--overlay",
                str(out / "overlay.png"),
                "--device",
                "cpu",
            ],
        )
        assert result.exit_code == 0, result.output
        mask = Image.open(out / "one.png")
        assert mask.mode == "P"
        expected = np.array(Image.open(run["pred"] / f"{first}.png"))
        np.testing.assert_array_equal(np.array(mask), expected)
        overlay = np.array(Image.open(out / "overlay.png"))
        assert overlay.shape == (*expected.shape, 3)

        written = predict_paths(checkpoint, rgb_dir, th_dir, out / "all", device="cpu")
        assert sorted(p.name for p in written) == sorted(f"{r['id']}.png" for r in run["rows"])
        for row in run["rows"]:
            np.testing.assert_array_equal(
                np.array(Image.open(out / "all" / f"{row['id']}.png")),
                np.array(Image.open(run["pred"] / f"{row['id']}.png")),
            )


def test_clear_errors(run, tmp_path):
    predictor = Predictor(run["best"], device="cpu")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(PredictError, match=r"rgb.png is 64x48 but .*small.png is 64x40"):
        predictor.predict_files(tmp_path / "rgb.png", tmp_path / "small.png")
    with pytest.raises(PredictError, match=r"broken.png: cannot read image"):
        predictor.predict_files(tmp_path / "rgb.png", tmp_path / "broken.png")
    with pytest.raises(PredictError, match=r"missing.png: no such file"):
        predictor.predict_files(tmp_path / "missing.png", tmp_path / "small.png")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    Image.open(tmp_path / "rgb.png").save(tmp_path / "a" / "x.png")
    Image.open(tmp_path / "rgb.png").save(tmp_path / "b" / "y.png")
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--checkpoint",
            str(run["best"]),
            "--rgb",
            str(tmp_path / "a"),
            "--thermal",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code != 0 and "unpaired images" in result.output and "'x'" in result.output


def test_base_checkpoint_must_be_present_and_identical(run, tmp_path):
    """A run trained on a base SAM2 file refuses to load without it, or with another file."""
    base = tmp_path / "sam2_base.pt"
    base.write_bytes(b"weights v1")
    state = ck.load_checkpoint(run["best"])
    state["base"] = {**state["base"], "path": str(base), "sha256": ck.sha256_file(base)}
    state["config"]["model"]["checkpoint"] = str(base)
    moved = tmp_path / "best.pt"
    ck.atomic_save(state, moved)
    base.write_bytes(b"weights v2")
    with pytest.raises(ModelLoadError, match="another file"):
        Predictor(moved, device="cpu")
    base.unlink()
    with pytest.raises(ModelLoadError, match="sam2_base.pt"):
        Predictor(moved, device="cpu")
