"""Evaluation: `evaluate(cfg, checkpoint=None, split="test") -> metrics` and metrics.json.

One confusion matrix per split (and per MFNet day/night subset), accumulated on the device;
predictions are cut back to the original image size before scoring (the evaluation transform pads
right/bottom). Options: multi-scale + flip (`eval.multi_scale`, `scales`, `flip`: softmax averaged
over scales and flips), and modality robustness (`eval.modality_robustness`): the same model with
one modality blanked. Blanking means the RAW image is all zeros before normalisation (a dead
camera: the dataset's `blank` option), so the normalised tensor holds -mean/std over the image
region while the padding stays 0.

Which checkpoint (`eval.checkpoint`): `auto` follows docs/method.md section 5: with a validation split
(MFNet) `best.pt` (selected on val) is the result; without one (PST900, FMB) `last.pt` is the
primary result and `best.pt` (selected on test: the authors' protocol) is reported beside it as
`test_best`. `last` / `best` force one file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from sartm import paths, tracking
from sartm.config import Config
from sartm.data.dataset import build_dataset
from sartm.engine import modelio, runtime
from sartm.engine.metrics import ConfusionMatrix
from sartm.engine.provenance import provenance
from sartm.engine.run_checkpoint import (
    config_differences,
    learning_identity,
    load_checkpoint,
    sha256_file,
)
from sartm.errors import SartmError

SCALE_MULTIPLE = 32  # multi-scale inputs are rounded to Hiera's total stride
STAGE_PREFIX = ".tmp-"  # eval/<dataset>/.tmp-<run>: the outputs until swapped in
STAGED_OUTPUTS = (paths.PREDICTIONS, paths.FEATURES)  # besides metrics.json
PREDICTION_IMAGES = 4  # prediction PNGs logged to MLflow (all of them stay in pred/)


class EvaluationError(SartmError, RuntimeError):
    """Nothing to evaluate, or a checkpoint that does not belong to the run."""


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    rgb: torch.Tensor,
    thermal: torch.Tensor,
    *,
    dtype: torch.dtype | None,
    scales: Iterable[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """(B, C, H, W) class scores at the input size: logits for one plain pass, else the mean
    softmax over the scales (and horizontal flips)."""
    scales = tuple(scales)
    size = rgb.shape[-2:]
    if scales == (1.0,) and not flip:
        with runtime.autocast(rgb.device, dtype):
            return model.predict(rgb, thermal).float()
    total = None
    for scale in scales:
        h = max(SCALE_MULTIPLE, round(size[0] * scale / SCALE_MULTIPLE) * SCALE_MULTIPLE)
        w = max(SCALE_MULTIPLE, round(size[1] * scale / SCALE_MULTIPLE) * SCALE_MULTIPLE)
        r = F.interpolate(rgb, (h, w), mode="bilinear", align_corners=False)
        t = F.interpolate(thermal, (h, w), mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            a, b = (r.flip(-1), t.flip(-1)) if flipped else (r, t)
            with runtime.autocast(rgb.device, dtype):
                logits = model.predict(a, b).float()
            if flipped:
                logits = logits.flip(-1)
            probs = F.interpolate(logits, size, mode="bilinear", align_corners=False).softmax(1)
            total = probs if total is None else total + probs
    return total


def score_loader(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype | None,
    scales: Iterable[float] = (1.0,),
    flip: bool = False,
    subsets: dict[str, set[str]] | None = None,
    on_prediction=None,
    desc: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics over a loader: {"all": ..., <subset>: ...}, summed over processes when distributed.

    on_prediction(ids, preds) receives the un-padded (H, W) class maps (CPU uint8 arrays) of
    every batch.
    """
    was_training = model.training
    model.eval()
    matrices = {"all": ConfusionMatrix(num_classes, device=device)}
    for name in subsets or {}:
        matrices[name] = ConfusionMatrix(num_classes, device=device)
    for batch in tqdm(loader, desc=desc, disable=desc is None, leave=False, dynamic_ncols=True):
        rgb = batch["rgb"].to(device, non_blocking=True)
        thermal = batch["thermal"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        heights, widths = batch["height"].tolist(), batch["width"].tolist()
        pred = predict_probs(model, rgb, thermal, dtype=dtype, scales=scales, flip=flip).argmax(1)
        cut_preds = []
        for i, (h, w) in enumerate(zip(heights, widths)):
            p, t = pred[i, :h, :w], label[i, :h, :w]  # cut the padding off
            matrices["all"].update(p, t)
            for name, ids in (subsets or {}).items():
                if batch["id"][i] in ids:
                    matrices[name].update(p, t)
            cut_preds.append(p)
        if on_prediction is not None:
            on_prediction(list(batch["id"]), [p.to(torch.uint8).cpu().numpy() for p in cut_preds])
    if was_training:
        model.train()
    out = {}
    for name, matrix in matrices.items():
        matrix.all_reduce()
        out[name] = matrix.compute()
    return out


def save_palette_png(pred: np.ndarray, palette: list[list[int]], path: Path) -> None:
    """A class-id map as an 8-bit palette PNG (viewers show colours, pixel values stay ids)."""
    image = Image.fromarray(pred.astype(np.uint8), mode="P")
    flat = [v for colour in palette for v in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@torch.no_grad()
def sample_features(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    pixels: int,
    device: torch.device,
    dtype: torch.dtype | None,
    seed: int = 0,
    max_images: int = 32,
) -> dict[str, np.ndarray]:
    """Fused stride-16 features (`sfm`) of up to `pixels` labelled positions, class-balanced as
    far as the data allows, from the first `max_images` images (figure F7's t-SNE)."""
    model.eval()
    feats, labels, seen = [], [], 0
    for batch in loader:
        rgb, thermal = batch["rgb"].to(device), batch["thermal"].to(device)
        with runtime.autocast(device, dtype):
            sfm = model(rgb, thermal)["sfm"].float()  # (B, d, h, w)
        label = batch["label"].to(device)
        small = F.interpolate(label[:, None].float(), sfm.shape[-2:], mode="nearest")[:, 0].long()
        for i in range(rgb.shape[0]):
            valid = small[i] != 255
            feats.append(sfm[i].permute(1, 2, 0)[valid].cpu())  # (n, d)
            labels.append(small[i][valid].cpu())
        seen += rgb.shape[0]
        if seen >= max_images:
            break
    all_feats, all_labels = torch.cat(feats), torch.cat(labels)
    gen = torch.Generator().manual_seed(seed)
    per_class = max(1, math.ceil(pixels / num_classes))
    keep = []
    for c in range(num_classes):
        idx = (all_labels == c).nonzero()[:, 0]
        keep.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    chosen = torch.cat(keep)
    if chosen.numel() < pixels:  # rare classes ran out: fill up from the rest
        rest = torch.ones(all_labels.numel(), dtype=torch.bool)
        rest[chosen] = False
        pool = rest.nonzero()[:, 0]
        extra = pool[torch.randperm(pool.numel(), generator=gen)[: pixels - chosen.numel()]]
        chosen = torch.cat([chosen, extra])
    chosen = chosen[:pixels]
    return {"features": all_feats[chosen].numpy(), "labels": all_labels[chosen].numpy()}


def _checkpoint_plan(
    cfg: Config, checkpoint: Path | None, results_root: Path
) -> list[tuple[str, Path]]:
    """[(result key suffix, file)]: "" is the primary result, "_best" the authors' best-on-test."""
    if checkpoint is not None:
        return [("", Path(checkpoint))]
    folder = paths.train_dir(cfg.run_id, results_root)
    last, best = folder / paths.LAST, folder / paths.BEST
    if not last.is_file():
        raise EvaluationError(
            f"{last}: no checkpoint; train the run first (sartm train --run {cfg.run_id})"
        )
    choice = cfg.eval.checkpoint
    if choice == "last":
        return [("", last)]
    if choice == "best":
        return [("", best)]
    selection = load_checkpoint(last).get("best", {}).get("split", "test")
    if selection == "val":
        return [("", best if best.is_file() else last)]
    return [("", last)] + ([("_best", best)] if best.is_file() else [])


class _Run:
    """What every pass of one evaluation shares: settings, data, device."""

    def __init__(self, cfg: Config, split: str, out_dir: Path, quiet: bool) -> None:
        self.cfg, self.split, self.out_dir, self.quiet = cfg, split, out_dir, quiet
        self.device = runtime.resolve_device(cfg.train.device)
        self.dtype = runtime.amp_dtype(cfg.train.precision, self.device)
        runtime.configure_backends(self.device, tf32=cfg.train.tf32)
        self.dataset = build_dataset(cfg, split, train=False)
        self.classes = list(self.dataset.meta["classes"])
        self.loader = self.make_loader(self.dataset)
        self.scales = tuple(cfg.eval.scales) if cfg.eval.multi_scale else (1.0,)
        self.flip = cfg.eval.flip and cfg.eval.multi_scale

    def make_loader(self, dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=max(1, self.cfg.train.batch_size),
            shuffle=False,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def score(self, model, loader=None, *, desc: str, **kwargs) -> dict[str, dict[str, Any]]:
        return score_loader(
            model,
            loader or self.loader,
            num_classes=len(self.classes),
            device=self.device,
            dtype=self.dtype,
            scales=self.scales,
            flip=self.flip,
            desc=None if self.quiet else desc,
            **kwargs,
        )

    def load(self, path: Path, *, explicit: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
        model, state = modelio.load_trained(path, device=self.device)
        if list(state["classes"]) != self.classes:
            raise EvaluationError(
                f"{path}: trained for classes {state['classes']}, but {self.split} of "
                f"{self.cfg.data.dataset} has {self.classes}"
            )
        trained = learning_identity(state.get("training_identity", {}))
        wanted = learning_identity(self.cfg.training_identity())
        if not explicit and trained != wanted:
            raise EvaluationError(
                f"{path}: belongs to another configuration; differing keys: "
                + "; ".join(config_differences(trained, wanted))
                + ". Retrain, or pass --checkpoint explicitly"
            )
        return model, state

    def primary_extras(self, model, state: dict[str, Any]) -> dict[str, Any]:
        """Subsets and predictions (in the main pass), modality robustness, t-SNE features."""
        cfg, out = self.cfg, {}
        subsets = {
            n: set(self.dataset.subset_ids(n)) for n in _subset_names(self.dataset.meta, self.split)
        }
        saved: list[str] = []

        def keep(ids: list[str], preds: list[np.ndarray]) -> None:
            for sample_id, pred in zip(ids, preds):
                if len(saved) < cfg.eval.save_predictions:
                    save_palette_png(
                        pred,
                        state["palette"],
                        self.out_dir / paths.PREDICTIONS / f"{sample_id}.png",
                    )
                    saved.append(sample_id)

        scores = self.score(
            model, desc=f"{self.split} ({state.get('kind')})", subsets=subsets, on_prediction=keep
        )
        out[self.split] = scores.pop("all")
        out["subsets"] = scores
        out["robustness"] = {}
        if cfg.eval.modality_robustness:
            for modality in ("thermal", "rgb"):
                blanked = build_dataset(cfg, self.split, train=False, blank=modality)
                out["robustness"][f"{modality}_blanked"] = self.score(
                    model, self.make_loader(blanked), desc=f"{self.split}, {modality} blanked"
                )["all"]
        if cfg.eval.tsne_pixels > 0:
            features = sample_features(
                model,
                self.loader,
                num_classes=len(self.classes),
                pixels=cfg.eval.tsne_pixels,
                device=self.device,
                dtype=self.dtype,
                seed=cfg.train.seed,
            )
            self.out_dir.mkdir(parents=True, exist_ok=True)
            np.savez(self.out_dir / paths.FEATURES, classes=np.array(self.classes), **features)
        return out


def _checkpoint_info(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "kind": state.get("kind"),
        "epoch": state.get("epoch"),
    }


def evaluate(
    cfg: Config,
    checkpoint: str | Path | None = None,
    split: str = "test",
    *,
    results_root: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Score the run's checkpoint(s) on `split`; write and return metrics.json (under
    `results_root`, default the preset's folder `paths.results_root`).

    The outputs are written to a temporary folder beside the run's and swapped in at the end, so
    an interrupted evaluation leaves the previous outputs as they were."""
    results_root = results_root or paths.results_root(cfg.preset)
    out_dir = paths.eval_dir(cfg.run_id, results_root)
    stage = out_dir.parent / f"{STAGE_PREFIX}{out_dir.name}"
    shutil.rmtree(stage, ignore_errors=True)  # left by an evaluation killed before
    stage.mkdir(parents=True)
    opened: list = []  # the evaluation's MLflow run, once open (a failure marks it FAILED)
    try:
        metrics = _evaluate_into(stage, cfg, checkpoint, split, results_root, quiet, opened)
        _swap_in(stage, out_dir)
        _log_evaluation(opened[0], metrics, out_dir, split)
    except BaseException:
        for tracker in opened:
            with contextlib.suppress(Exception):
                tracker.end("FAILED")
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    opened[0].end()
    if not quiet:
        print(f"{out_dir / paths.METRICS}: {split} mIoU {metrics[split]['miou']:.4f}")
    return metrics


def _open_run(cfg: Config, path: Path, state: dict[str, Any], run: _Run, out_dir: Path):
    """The evaluation's MLflow run: a child of the training job's run (the checkpoint names it),
    so the training run keeps its own duration and stage; the split as its dataset input."""
    split = run.split
    tracker = tracking.start_run(
        cfg,
        stage="evaluate",
        parent_run_id=state.get("mlflow_run_id"),
        run_name=f"{cfg.run_id} evaluate {split}",
        tags={"eval_checkpoint": str(path), "eval_split": split, **tracking.EVALUATION_TAGS},
        note=tracking.run_note(cfg, f"evaluation of `{path}` on {split}, outputs in `{out_dir}`"),
    )
    if run.device.type == "cuda":  # GPU runs only
        tracker.start_system_metrics()
    tracker.log_dataset(run.dataset, "evaluation")
    return tracker


def eval_metrics(metrics: dict[str, Any], split: str) -> dict[str, float]:
    """metrics.json as MLflow metrics of the evaluation run, under `eval/` (training logs
    `<split>_miou` per epoch: distinct keys): the scores, per-class IoU, subsets, robustness."""
    scores = metrics[split]
    flat = {f"eval/{split}_{k}": scores[k] for k in ("miou", "macc", "mf1", "pixel_acc")}
    for name, iou in zip(metrics["classes"], scores["iou"]):
        flat[f"eval/{split}_iou/{_metric_name(name)}"] = iou
    if f"{split}_best" in metrics:
        flat.update(
            {f"eval/{split}_best_{k}": metrics[f"{split}_best"][k] for k in ("miou", "macc", "mf1")}
        )
    for name, values in {**metrics["subsets"], **metrics["robustness"]}.items():
        flat[f"eval/{split}_{name}_miou"] = values["miou"]
    flat["eval/time_s"] = metrics["eval_time_s"]
    return flat


def _metric_name(text: str) -> str:
    """MLflow metric names allow letters, digits, `_ - . / :` and spaces."""
    return "".join(c if c.isalnum() or c in "_-. :" else "_" for c in str(text))


def _log_evaluation(tracker, metrics: dict[str, Any], out_dir: Path, split: str) -> None:
    """Scores (linked to the scored checkpoint: a logged model of the training run), metrics.json
    and the first few prediction images (small: the run page shows them)."""
    model_id = tracker.log_model(
        Path(metrics["checkpoint"]["path"]),
        source_run_id=tracker.parent_run_id,
        name=metrics["run_id"],
        tags={"kind": str(metrics["checkpoint"]["kind"]), "epoch": str(metrics["checkpoint"]["epoch"]),
              "run_id_path": metrics["run_id"], "preset": metrics["preset"]},
    )  # fmt: skip
    tracker.log_metrics(eval_metrics(metrics, split), model_id=model_id)
    tracker.log_artifact(out_dir / paths.METRICS, "eval")
    for png in sorted((out_dir / paths.PREDICTIONS).glob("*.png"))[:PREDICTION_IMAGES]:
        tracker.log_artifact(png, "predictions")


def _swap_in(stage: Path, out_dir: Path) -> None:
    """Replace the previous outputs by the staged ones. metrics.json goes first and comes back
    last: a kill in between leaves no metrics.json, never one beside other predictions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / paths.METRICS).unlink(missing_ok=True)
    for name in STAGED_OUTPUTS:
        old, new = out_dir / name, stage / name
        if os.path.lexists(old):
            old.rename(stage / f"previous-{name}")  # removed with the stage
        if new.exists():
            new.rename(old)
    (stage / paths.METRICS).replace(out_dir / paths.METRICS)


def _evaluate_into(
    stage: Path, cfg: Config, checkpoint, split: str, results_root: Path, quiet: bool, opened: list
) -> dict[str, Any]:
    """Write metrics.json and the other outputs into `stage`; the MLflow run goes to `opened`."""
    started = time.perf_counter()
    explicit = checkpoint is not None
    plan = _checkpoint_plan(cfg, Path(checkpoint) if explicit else None, results_root)
    run = _Run(cfg, split, stage, quiet)

    path = plan[0][1]
    model, state = run.load(path, explicit=explicit)
    out_dir = paths.eval_dir(cfg.run_id, results_root)
    opened.append(_open_run(cfg, path, state, run, out_dir))
    scores = run.primary_extras(model, state)
    metrics: dict[str, Any] = {
        "run_id": cfg.run_id,
        "run": cfg.run,
        "dataset": cfg.dataset,
        "source": cfg.data.dataset,
        "preset": cfg.preset,
        "synthetic": bool(run.dataset.meta.get("synthetic", cfg.synthetic)),
        "config_hash": cfg.hash(),
        "split": split,
        "checkpoint": _checkpoint_info(path, state),
        "classes": run.classes,
        split: scores[split],
    }
    params = modelio.count_parameters(model)
    del model
    if len(plan) > 1:  # no validation split: the authors' best-on-test beside the primary result
        best_path = plan[1][1]
        best_model, best_state = run.load(best_path, explicit=explicit)
        if best_state.get("epoch") == state.get("epoch"):
            metrics[f"{split}_best"] = scores[split]  # the same weights: the same numbers
        else:
            metrics[f"{split}_best"] = run.score(best_model, desc=f"{split} (best)")["all"]
        metrics[f"checkpoint_{split}_best"] = _checkpoint_info(best_path, best_state)
        del best_model
    metrics.update(
        {
            "subsets": scores["subsets"],
            "robustness": scores["robustness"],
            "params": params,
            "train_time_s": state.get("train_time_s"),
            "eval_time_s": time.perf_counter() - started,
            "protocol": {
                "multi_scale": cfg.eval.multi_scale,
                "scales": list(run.scales),
                "flip": run.flip,
                "blanking": "raw image set to 0 before normalisation",
                f"{split}_best": "authors' protocol: checkpoint selected on the test set"
                if f"{split}_best" in metrics
                else None,
            },
            "provenance": provenance(run.device),
            "mlflow": {"experiment_id": opened[0].experiment_id, "run_id": opened[0].run_id},
        }
    )
    (stage / paths.METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def _subset_names(meta: dict[str, Any], split: str) -> list[str]:
    """Subsets recorded for this split in meta.json (MFNet: day, night of test)."""
    prefix = f"{split}_"
    return sorted(k[len(prefix) :] for k in meta.get("subsets", {}) if k.startswith(prefix))
