"""Small, fake pipeline outputs in the contract shapes (metrics.json, predictions, features, ...).

The report code reads only files; these writers make them in tmp_path so the tables and figures
are tested without training anything.
"""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from sartm import paths, runs
from sartm.data.common import LayoutWriter
from sartm.data.spec import spec_for


def block(rng: np.random.Generator, n: int, miou: float | None = None) -> dict:
    """One metrics block; `miou` fixes the mean IoU exactly (for hand-checked differences)."""
    iou = rng.uniform(0.2, 0.9, n)
    if miou is not None:
        iou = iou - iou.mean() + miou
    return {
        "miou": float(iou.mean()),
        "macc": float(rng.uniform(0.3, 0.9)),
        "mf1": float(rng.uniform(0.3, 0.9)),
        "pixel_acc": 0.9,
        "iou": iou.tolist(),
        "acc": iou.tolist(),
        "f1": iou.tolist(),
    }


def write_metrics(
    results: Path,
    run_id: str,
    *,
    preset: str = "demo",
    best: bool = True,
    miou: float | None = None,
    seed: int = 0,
) -> dict:
    """eval/<run_id>/metrics.json (under `results`) in the evaluation contract's shape."""
    dataset, run = run_id.split("/")[:2]
    rng = np.random.default_rng(zlib.crc32(f"{run_id}:{seed}".encode()))
    n = len(spec_for(dataset).classes)
    synthetic = preset != "paper"
    metrics = {
        "run_id": run_id,
        "run": run,
        "dataset": dataset,
        "source": f"synth-{dataset}" if synthetic else dataset,
        "preset": preset,
        "synthetic": synthetic,
        "config_hash": "0123456789ab",
        "checkpoint": {"path": "last.pt", "sha256": "0" * 64, "kind": "last", "epoch": 6},
        "classes": list(spec_for(dataset).classes),
        "test": block(rng, n, miou),
        "subsets": {"day": block(rng, n), "night": block(rng, n)},
        "robustness": {"thermal_blanked": block(rng, n), "rgb_blanked": block(rng, n)},
        "params": {"total": 2_000_000, "trainable": 50_000},
        "train_time_s": 30.0,
        "provenance": {"sartm": "0.1.0", "torch": "x", "device": "cpu", "git_commit": "x"},
    }
    if best:
        metrics["test_best"] = block(rng, n)
    path = paths.eval_dir(run_id, results) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return metrics


def write_dataset(
    data: Path, source: str, *, ids: int = 3, size: tuple[int, int] = (32, 24)
) -> Path:
    """A tiny processed dataset (common layout) with a few test samples."""
    spec = spec_for(source)
    rng = np.random.default_rng(0)
    w, h = size
    out = paths.processed_dir(source, data)
    with LayoutWriter(
        out, name=source, classes=spec.classes, palette=spec.palette, source=source, synthetic=True
    ) as writer:
        for split in ("train", "test"):
            for i in range(ids):
                label = rng.integers(0, spec.num_classes, (h, w), dtype=np.uint8)
                rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                thermal = rng.integers(0, 255, (h, w), dtype=np.uint8)
                writer.add(split, f"{split}{i:03d}", rgb, thermal, label)
    return out


def write_predictions(results: Path, run_id: str, ids: list[str], classes: int, size=(32, 24)):
    """Palette PNGs of predicted labels, as evaluation saves them."""
    folder = paths.eval_dir(run_id, results) / "pred"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    spec_palette = np.zeros((256, 3), np.uint8)
    for i in ids:
        img = Image.fromarray(rng.integers(0, classes, size[::-1], dtype=np.uint8), mode="P")
        img.putpalette(spec_palette.ravel().tolist())
        img.save(folder / f"{i}.png")


def write_features(results: Path, run_id: str, classes: int, n: int = 60, d: int = 8) -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, classes, n)
    features = rng.normal(size=(n, d)) + labels[:, None]
    path = paths.eval_dir(run_id, results) / "features.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=features, labels=labels)


def write_similarity(results: Path, run_id: str, classes: list[str], epochs=(1, 3)) -> None:
    folder = paths.train_dir(run_id, results) / "similarity"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    k = len(classes)
    for epoch in epochs:
        visual = np.clip(rng.normal(size=(k, k)), -1, 1)
        np.savez(
            folder / f"epoch_{epoch}.npz",
            epoch=epoch,
            visual=visual,
            text=visual.T,
            class_ids=np.arange(k),
            classes=np.array(classes),
        )


def write_history(results: Path, run_id: str, epochs: int = 3) -> None:
    path = paths.train_dir(run_id, results) / "history.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "step", "lr", "train_loss", "test_miou"])
        for e in range(1, epochs + 1):
            writer.writerow([e, 10 * e, 1e-4 / e, 2.0 / e, 0.1 * e])


def write_summary_runs(results: Path) -> dict[str, list[str]]:
    """metrics.json of every run the summary reads (mIoU 50 %), pst900/full over three seeds
    (50, 46, 56 %); returns the {logical: [run ids]} mapping."""
    mapping = {}
    for logical in runs.summary_runs():
        write_metrics(results, logical, miou=0.5)
        mapping[logical] = [logical]
    for run_id, miou in (("pst900/full/seed1", 0.46), ("pst900/full/seed2", 0.56)):
        write_metrics(results, run_id, miou=miou)
    mapping["pst900/full"] = ["pst900/full", "pst900/full/seed1", "pst900/full/seed2"]
    return mapping
