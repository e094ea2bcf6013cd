"""Prediction on image pairs, and the self-contained export file.

`Predictor` accepts a training checkpoint (`last.pt` / `best.pt`: needs the same base SAM2
checkpoint, checked by SHA-256) or an exported file (`sartm export`: the whole model, its config,
class names, palette and normalisation in one file, nothing else needed). Images are read the way
the dataset reads them and checked the same way (8-bit RGB; thermal 8-bit single-channel or grey
stored as 3 equal channels, anything else refused), normalised and padded like the evaluation
protocol, and the prediction is cut back to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sartm.config import config_from_dict
from sartm.data.readers import read_rgb, read_thermal
from sartm.data.transforms import EvalTransform, Normalisation
from sartm.engine import modelio, runtime
from sartm.engine.evaluate import predict_probs, save_palette_png
from sartm.engine.run_checkpoint import (
    EXPORT_FORMAT,
    TrainingCheckpointError,
    atomic_save,
    load_checkpoint,
    sha256_file,
)
from sartm.errors import SartmError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class PredictError(SartmError, RuntimeError):
    """An input that cannot be predicted (unreadable, sizes differ, unpaired files)."""


@dataclass
class Prediction:
    labels: np.ndarray  # (H, W) uint8 class ids
    rgb: np.ndarray  # (H, W, 3) uint8, the input (for overlays)


class Predictor:
    """A trained model ready for inference, with what is needed to read and write images."""

    def __init__(self, checkpoint: str | Path, *, device: str = "auto") -> None:
        self.device = runtime.resolve_device(device)
        self.model, self.state = modelio.load_trained(checkpoint, device=self.device)
        self.cfg = config_from_dict(self.state["config"])
        self.classes: list[str] = list(self.state["classes"])
        self.palette: list[list[int]] = [list(c) for c in self.state["palette"]]
        self.dtype = runtime.amp_dtype(self.cfg.train.precision, self.device)
        runtime.configure_backends(self.device, tf32=self.cfg.train.tf32)
        norm = Normalisation(**{k: tuple(v) for k, v in self.state["normalisation"].items()})
        self.transform = EvalTransform(
            eval_size=self.cfg.data.eval_size, normalisation=norm, resize=self.cfg.data.eval_resize
        )

    def predict_arrays(self, rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) and thermal (H, W) -> (H, W) uint8 class ids."""
        height, width = thermal.shape
        sample = self.transform(
            {
                "rgb": torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
                "thermal": torch.from_numpy(thermal)[None],
                "label": torch.zeros(height, width, dtype=torch.uint8),
            }
        )
        r = sample["rgb"][None].to(self.device)
        t = sample["thermal"][None].to(self.device)
        probs = predict_probs(self.model, r, t, dtype=self.dtype)
        h, w = sample["height"], sample["width"]
        pred = probs.argmax(1)[:, :h, :w]
        if (h, w) != (height, width):  # eval_resize: back to the input size, nearest only
            pred = torch.nn.functional.interpolate(
                pred[None].float(), (height, width), mode="nearest"
            )[0]
        return pred[0].to(torch.uint8).cpu().numpy()

    def predict_files(self, rgb_path: str | Path, thermal_path: str | Path) -> Prediction:
        rgb = read_rgb(Path(rgb_path))  # checked as `sartm data prepare` checks a dataset's files
        thermal = read_thermal(Path(thermal_path), gray_rgb=True)
        if rgb.shape[:2] != thermal.shape:
            raise PredictError(
                f"{rgb_path} is {rgb.shape[1]}x{rgb.shape[0]} but {thermal_path} is "
                f"{thermal.shape[1]}x{thermal.shape[0]}: an RGB-thermal pair must have one size"
            )
        return Prediction(labels=self.predict_arrays(rgb, thermal), rgb=rgb)

    def write(self, prediction: Prediction, out: Path, overlay: Path | None = None) -> None:
        save_palette_png(prediction.labels, self.palette, out)
        if overlay is not None:
            colours = np.asarray(self.palette, dtype=np.float32)[prediction.labels]
            mix = np.where(
                prediction.labels[..., None] > 0,
                0.5 * prediction.rgb.astype(np.float32) + 0.5 * colours,
                prediction.rgb.astype(np.float32),
            )
            overlay.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mix.round().astype(np.uint8)).save(overlay)


def pair_folders(rgb_dir: Path, thermal_dir: Path) -> list[tuple[Path, Path]]:
    """Files of the two folders paired by name stem; unpaired names are an error."""

    def images(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    rgb, thermal = images(rgb_dir), images(thermal_dir)
    if not rgb:
        raise PredictError(f"{rgb_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    only_rgb, only_thermal = sorted(set(rgb) - set(thermal)), sorted(set(thermal) - set(rgb))
    if only_rgb or only_thermal:
        raise PredictError(
            f"unpaired images: in {rgb_dir} only {only_rgb[:10]}, in {thermal_dir} only "
            f"{only_thermal[:10]} (pairs are matched by file name)"
        )
    return [(rgb[k], thermal[k]) for k in sorted(rgb)]


def predict_paths(
    checkpoint: str | Path,
    rgb: Path,
    thermal: Path,
    out: Path,
    overlay: Path | None = None,
    *,
    device: str = "auto",
) -> list[Path]:
    """One pair (files) or every pair of two folders; returns the masks written."""
    rgb, thermal, out = Path(rgb), Path(thermal), Path(out)
    if rgb.is_dir() != thermal.is_dir():
        raise PredictError(f"{rgb} and {thermal}: give two files or two folders")
    pairs = pair_folders(rgb, thermal) if rgb.is_dir() else [(rgb, thermal)]
    predictor = Predictor(checkpoint, device=device)
    written = []
    for r, t in pairs:
        target = out / f"{r.stem}.png" if rgb.is_dir() else out
        view = (overlay / f"{r.stem}.png" if rgb.is_dir() else overlay) if overlay else None
        predictor.write(predictor.predict_files(r, t), target, view)
        written.append(target)
    return written


def _is_export(path: Path) -> bool:
    """Whether `path` is a file `sartm export` wrote (those may be replaced; nothing else is)."""
    try:
        return load_checkpoint(path, required=("format",))["format"] == EXPORT_FORMAT
    except TrainingCheckpointError:
        return False


def export(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """Write one self-contained model file: all weights (frozen SAM2 + adapters; LoRA is merged
    when it is loaded), config, classes, palette, normalisation, text embeddings if any."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not _is_export(out):
        raise PredictError(
            f"{out}: exists and is not a sartm export; refusing to overwrite it "
            "(choose another --out, or move the file away)"
        )
    model, state = modelio.load_trained(checkpoint)
    if state["format"] == EXPORT_FORMAT:
        raise PredictError(f"{checkpoint}: already an exported model")
    exported = {
        "format": EXPORT_FORMAT,
        "model": model.state_dict(),
        "config": state["config"],
        "config_hash": state["config_hash"],
        "classes": state["classes"],
        "palette": state["palette"],
        "ignore_index": state.get("ignore_index", 255),
        "normalisation": state["normalisation"],
        "text_embeddings": state.get("text_embeddings"),
        "kind": state.get("kind"),
        "epoch": state.get("epoch"),
        "source": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)},
        "base": state["base"],
        "train_time_s": state.get("train_time_s"),
    }
    atomic_save(exported, out)
    return {
        "path": str(out),
        "sha256": sha256_file(out),
        "parameters": modelio.count_parameters(model),
    }
