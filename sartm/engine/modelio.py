"""Building the model: for a run from its configuration, and for inference from a file a run wrote.

Training checkpoints hold only the trainable state (LoRA, fusion, decoder, heads, EMA buffers),
never the frozen SAM2 weights. Those come from the base checkpoint file (recorded by path and
SHA-256, checked on reload) or, for the offline demo without any checkpoint, from the seeded random
initialisation; a fingerprint of the frozen weights is recorded either way so a reload that would
silently use other frozen weights fails instead. An exported file (`sartm export`) holds the whole
merged model and needs nothing else. The files themselves: `sartm.engine.run_checkpoint`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sartm import paths, torchfile
from sartm.config import Config, config_from_dict
from sartm.engine.run_checkpoint import (
    EXPORT_FORMAT,
    TRAIN_FORMAT,
    TrainingCheckpointError,
    load_checkpoint,
    seed_everything,
    sha256_file,
)
from sartm.errors import SartmError
from sartm.model.sam2_weights import resolve_checkpoint
from sartm.model.sartm import build_model
from sartm.text import load_text_cache


class ModelLoadError(SartmError, RuntimeError):
    """A checkpoint that cannot be turned back into the model it came from."""


@dataclass
class BaseWeights:
    """The frozen SAM2 weights a run started from."""

    path: str | None
    sha256: str | None
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "fingerprint": self.fingerprint}


def frozen_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex) over the frozen parameters: names, shapes and a few values of each.

    Sampling values (not hashing every byte) keeps this fast for the large encoders while still
    telling two initialisations or two checkpoints apart.
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            continue
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        sample = flat[::step][:64].float().cpu().numpy().tobytes()
        digest.update(name.encode() + str(tuple(param.shape)).encode() + sample)
    return digest.hexdigest()[:16]


def text_embeddings_for(
    cfg: Config, classes: list[str], cache: Path | None = None
) -> torch.Tensor | None:
    """The text teacher's embeddings when L_se is on (w3 > 0); never read otherwise."""
    if cfg.loss.w3 <= 0:
        return None
    cache = cache or paths.text_cache(cfg.data.dataset, Path(cfg.data.root))
    if not Path(cache).is_file():
        raise ModelLoadError(
            f"{cache}: no text-embedding cache; loss.w3 > 0 needs it: run `sartm embed "
            f"{cfg.data.dataset} --out {cache}` (or set loss.w3=0)"
        )
    return load_text_cache(cache, classes)


def build(
    cfg: Config, num_classes: int, text_embeddings: torch.Tensor | None, *, quiet: bool = True
) -> tuple[nn.Module, BaseWeights]:
    """The model of `cfg` with its frozen base weights, seeded so random weights are reproducible."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg, num_classes, text_embeddings)
    path = sha = None
    if cfg.model.checkpoint:
        resolved = Path(resolve_checkpoint(cfg.model.checkpoint))
        report = model.load_sam2_checkpoint(resolved)
        if not quiet:
            print(report.format())
        if not report.ok:
            raise ModelLoadError(
                f"{resolved}: does not fit {cfg.model.backbone}:\n{report.format()}"
            )
        path, sha = str(resolved.resolve()), sha256_file(resolved)
    return model, BaseWeights(path, sha, frozen_fingerprint(model))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"total", "trainable"} parameter counts, as training and evaluation report them."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def _check_base(recorded: dict[str, Any], cfg: Config, source: Path) -> None:
    """Refuse to rebuild when the base SAM2 checkpoint is missing or is another file."""
    if not recorded.get("path"):
        return
    try:
        current = Path(resolve_checkpoint(cfg.model.checkpoint))
    except Exception as exc:
        raise ModelLoadError(
            f"{source}: needs the base SAM2 checkpoint {recorded['path']} "
            f"({cfg.model.checkpoint}), which is not available: {exc}"
        ) from exc
    if not current.is_file():
        raise ModelLoadError(f"{source}: base SAM2 checkpoint {current} is missing")
    sha = sha256_file(current)
    if sha != recorded.get("sha256"):
        raise ModelLoadError(
            f"{source}: trained on base SAM2 checkpoint {recorded['path']} (sha256 "
            f"{recorded.get('sha256')}), but {current} has sha256 {sha}: another file"
        )


def load_trained(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """(model for inference on `device`, the checkpoint dict) from a training checkpoint or an
    export; LoRA is merged, so the model must not be trained further."""
    path = Path(path)
    state = load_checkpoint(path, required=("format", "config", "model"))
    torchfile.refuse_non_finite(state["model"], path, ModelLoadError)
    cfg = config_from_dict(state["config"])
    num_classes = len(state["classes"])
    text = state.get("text_embeddings")
    if state["format"] == EXPORT_FORMAT:
        model = build_model(cfg, num_classes, text)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ModelLoadError(f"{path}: exported weights do not fit the model: {exc}") from exc
    elif state["format"] == TRAIN_FORMAT:
        _check_base(state["base"], cfg, path)
        model, base = build(cfg, num_classes, text)
        if base.fingerprint != state["base"]["fingerprint"]:
            raise ModelLoadError(
                f"{path}: the frozen SAM2 weights differ from the ones the run trained with "
                f"(fingerprint {base.fingerprint} != {state['base']['fingerprint']}); was it "
                "trained with another sam2/torch version or base checkpoint?"
            )
        model.load_trainable_state_dict(state["model"])
    else:
        raise TrainingCheckpointError(f"{path}: unknown checkpoint format {state['format']!r}")
    model.to(device).eval()
    model.merge_lora()  # inference only: q/v updates folded into cached weights
    return model, state
