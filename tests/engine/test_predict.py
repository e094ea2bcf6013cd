"""`sartm predict` / `sartm export`: image pairs in, palette masks out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sartm.cli import cli
from sartm.data.common import DataError, read_manifest
from sartm.engine import run_checkpoint as ck
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
    again = runner.invoke(
        cli, ["export", "--checkpoint", str(run["best"]), "--out", str(model_file)]
    )
    assert again.exit_code == 0, again.output  # an export may be replaced
    notes = tmp_path / "notes.pt"
    notes.write_text("my own file")
    refused = runner.invoke(cli, ["export", "--checkpoint", str(run["best"]), "--out", str(notes)])
    assert refused.exit_code == 1 and "notes.pt: exists and is not a sartm export" in refused.output
    assert notes.read_text() == "my own file"
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
        assert result.output.splitlines() == [
            f"wrote 1 mask(s) to {out / 'one.png'}",
            f"wrote 1 overlay(s) to {out / 'overlay.png'}",
        ]
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
    with pytest.raises(DataError, match=r"broken.png: unreadable or truncated image"):
        predictor.predict_files(tmp_path / "rgb.png", tmp_path / "broken.png")
    with pytest.raises(DataError, match=r"missing.png: missing"):
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


def test_inputs_are_checked_like_a_dataset(run, tmp_path):
    """16-bit or colour thermal and RGBA colour are refused (they used to become a constant 255
    or pass silently); grey stored as three equal channels is the same image as one channel."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "grey3.png")
    Image.fromarray(grey.astype(np.uint16) * 200).save(tmp_path / "t16.png")
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(np.dstack([rgb, grey])).save(tmp_path / "rgba.png")
    predictor = Predictor(run["best"], device="cpu")
    for rgb_file, thermal_file, message in [
        ("rgb.png", "t16.png", r"t16.png: thermal image is I;16"),
        ("rgb.png", "colour.png", r"colour.png: thermal image has 3 channels that differ"),
        ("rgba.png", "grey.png", r"rgba.png: RGB image must have 3 channels .*RGBA"),
    ]:
        with pytest.raises(DataError, match=message):
            predictor.predict_files(tmp_path / rgb_file, tmp_path / thermal_file)
    one = predictor.predict_files(tmp_path / "rgb.png", tmp_path / "grey.png").labels
    three = predictor.predict_files(tmp_path / "rgb.png", tmp_path / "grey3.png").labels
    np.testing.assert_array_equal(one, three)

    args = ["predict", "--checkpoint", str(run["best"]), "--rgb", str(tmp_path / "rgb.png")]
    args += ["--thermal", str(tmp_path / "t16.png"), "--out", str(tmp_path / "m.png")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and "t16.png" in result.output
    assert not (tmp_path / "m.png").exists()


def test_non_finite_weights_are_refused(run, tmp_path):
    state = ck.load_checkpoint(run["best"])
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    damaged = tmp_path / "nan.pt"
    ck.atomic_save(state, damaged)
    with pytest.raises(ModelLoadError, match=rf"nan.pt: 1 weight tensor\(s\) hold NaN .*{name}"):
        Predictor(damaged, device="cpu")


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
