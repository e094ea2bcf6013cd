"""The assembled SARTM model (paper Sec. III, docs/method.md sections 2-4).

    rgb, thermal -> RGBTEncoder (frozen SAM2 + q/v LoRA, one pass)     3 FPN levels per modality
      -> conv_s0 / conv_s1 (SAM2 decoder weights, shared by both)      FFP d/8, IFP d/4, SFM d
      -> RGBTFusion (FRM + FFM per level)                              F~_0, F~_1, F~_n
      -> S0: class-token SAM2 mask decoder on F~_n (+ F~_1, F~_0)      (B, C, H, W) logits
      -> S1: auxiliary head on the three fused levels (optional)       (B, C, H, W) logits
    loss: SARTMLoss (OHEM CE on S0 and S1, L_cr, L_se on F~_n prototypes)

A loss weight of 0 removes what only that term needs (config.py canonicalises the settings; the
parts below are built from the canonical values), so configurations that differ only in unused
parts have the same state-dict keys and parameter counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sartm.config import Config
from sartm.errors import SartmError
from sartm.losses import SARTMLoss
from sartm.model.decoder import ClassTokenMaskDecoder, build_decoder
from sartm.model.encoder import RGBTEncoder
from sartm.model.fusion import RGBTFusion
from sartm.model.heads import build_head
from sartm.model.sam2_weights import (
    CheckpointError,
    LoadReport,
    read_sam2_checkpoint,
    split_sam2_state,
)

PREDICT_MODES = ("s0", "s0+s1")
# The frozen SAM2 weights and buffers (from the base checkpoint or the seeded random
# initialisation), never part of the trained state: the encoder and the prompt-free embeddings
# (the authors freeze SAM2's prompt encoder).
FROZEN_PREFIXES = ("encoder.", "decoder.prompt.")


class ModelError(SartmError, ValueError):
    """A model that cannot be built or a trained state that does not fit it."""


class Similarity(NamedTuple):
    """Figure F8 for one batch: cosine similarities between the classes present in it."""

    visual: np.ndarray  # (K, K), class prototypes of the fused SFM
    text: np.ndarray | None  # (K, K), text teacher; None without one (loss.w3 = 0)
    present: np.ndarray  # (K,) class ids, ascending


def _upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class SARTM(nn.Module):
    """Encoder, fusion, S0 decoder, optional S1 head and the training objective."""

    def __init__(
        self,
        *,
        encoder: RGBTEncoder,
        fusion: RGBTFusion,
        decoder: ClassTokenMaskDecoder,
        aux_head: nn.Module | None,
        criterion: SARTMLoss,
        predict_mode: str = "s0",
    ) -> None:
        super().__init__()
        if predict_mode not in PREDICT_MODES:
            raise ModelError(
                f"model.predict: {predict_mode!r}; allowed: {', '.join(PREDICT_MODES)}"
            )
        if predict_mode == "s0+s1" and aux_head is None:
            raise ModelError("model.predict: 's0+s1' needs the S1 head, but none is built")
        self.encoder = encoder
        self.fusion = fusion
        self.decoder = decoder
        self.aux_head = aux_head
        self.criterion = criterion
        self.predict_mode = predict_mode
        self.num_classes = decoder.num_classes

    # --- forward -----------------------------------------------------------------------------
    def fused_features(self, rgb: Tensor, thermal: Tensor) -> list[Tensor]:
        """[F~_0 (B, d/8, H/4, W/4), F~_1 (B, d/4, H/8, W/8), F~_n (B, d, H/16, W/16)]."""
        feats_rgb, feats_thermal = self.encoder(rgb, thermal)
        levels = []
        for s4, s8, s16 in (feats_rgb, feats_thermal):
            s0, s1 = self.decoder.project_high_res(s4, s8)
            levels.append([s0, s1, s16])
        return self.fusion(levels[0], levels[1])

    def forward(self, rgb: Tensor, thermal: Tensor) -> dict[str, Tensor]:
        """{"s0": (B, C, H, W), "s1": (B, C, H, W) when the S1 head exists, "sfm": F~_n}."""
        f0, f1, fn = self.fused_features(rgb, thermal)
        size = tuple(rgb.shape[-2:])
        out = {"s0": _upsample(self.decoder(fn, f0, f1), size)}
        if self.aux_head is not None:
            out["s1"] = _upsample(self.aux_head([f0, f1, fn]), size)
        out["sfm"] = fn
        return out

    @torch.no_grad()
    def predict(self, rgb: Tensor, thermal: Tensor) -> Tensor:
        """(B, C, H, W) scores whose argmax is the prediction: S0's logits (the authors), or for
        `s0+s1` the log of the mean of both softmaxes (a softmax of it gives that mean back)."""
        out = self(rgb, thermal)
        if self.predict_mode == "s0":
            return out["s0"]
        probs = 0.5 * (out["s0"].float().softmax(1) + out["s1"].float().softmax(1))
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def compute_loss(
        self, outputs: dict[str, Tensor], label: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(weighted total, unweighted terms ce_s0 / ce_s1 / l_cr / l_se with weight > 0)."""
        return self.criterion(outputs, label)

    def similarity_matrices(self, outputs: dict[str, Tensor], label: Tensor) -> Similarity:
        """Visual and text class-similarity matrices of the batch (figure F8), and the ids of the
        classes present, as numpy arrays: `visual, text, present = model.similarity_matrices(...)`."""
        sim = self.criterion.batch_similarity(outputs, label)
        return Similarity(visual=sim.visual, text=sim.text, present=sim.class_ids)

    # --- trained state ------------------------------------------------------------------------
    def trainable_keys(self) -> list[str]:
        """State-dict keys of the trained state: trainable parameters (LoRA, fusion, decoder,
        head) and the buffers of the trained parts (BatchNorm statistics, EMA prototypes)."""
        params = dict(self.named_parameters())
        return [
            name
            for name in self.state_dict()
            if (
                params[name].requires_grad
                if name in params
                else not name.startswith(FROZEN_PREFIXES)
            )
        ]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a training checkpoint holds; never the frozen SAM2 weights."""
        state = self.state_dict()
        return {k: state[k] for k in self.trainable_keys()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a `trainable_state_dict`; refuses one with other keys or shapes (names them)."""
        expected = self.trainable_keys()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in set(expected)]
        own = self.state_dict()
        wrong = [
            f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
            for k in expected
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or wrong:
            raise ModelError(
                "trained state does not fit this model: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                f"shape mismatch {wrong[:5]}"
            )
        result = self.load_state_dict(state, strict=False)
        assert not result.unexpected_keys  # checked above

    def merge_lora(self) -> None:
        """Fold the LoRA updates into the encoder for inference (see RGBTEncoder.merge_lora)."""
        self.encoder.merge_lora()

    # --- official SAM2 checkpoints ----------------------------------------------------------
    def load_sam2_checkpoint(self, path: str | Path) -> LoadReport:
        """Load an official SAM2 checkpoint: image encoder (frozen), mask decoder and the two
        prompt-encoder tensors where shapes allow; one report for all of it.

        Raises `CheckpointError` for an unreadable file or a checkpoint of another size."""
        state = read_sam2_checkpoint(path)
        source = str(path)
        parts, report = split_sam2_state(state)
        report.source = source
        report = report.merge(self.encoder.load_sam2_state(parts["image_encoder"], source=source))
        report = report.merge(
            self.decoder.load_sam2_state(
                parts["sam_mask_decoder"], parts["sam_prompt_encoder"], source=source
            )
        )
        report.source = source
        return report


def build_model(cfg: Config, num_classes: int, text_embeddings: Tensor | None = None) -> SARTM:
    """The SARTM model of a resolved configuration, with random (seeded) weights.

    Random weights come from `cfg.train.seed` in a forked RNG, so the frozen encoder of a run
    without a SAM2 checkpoint is the same every time the model is built, and the caller's RNG is
    left as it was. Load pretrained SAM2 weights with `load_sam2_checkpoint`.
    """
    m, loss = cfg.model, cfg.loss
    if num_classes < 2:
        raise ModelError(f"num_classes must be >= 2, got {num_classes}")
    if loss.w3 > 0:
        if text_embeddings is None:
            raise ModelError(
                f"loss.w3 = {loss.w3:g} needs the text embeddings of the {num_classes} classes "
                f"(run `sartm embed {cfg.dataset}` and pass load_text_cache(...)), or set loss.w3=0"
            )
        if text_embeddings.ndim != 2 or text_embeddings.shape[0] != num_classes:
            raise ModelError(
                f"text embeddings have shape {tuple(text_embeddings.shape)}; expected "
                f"({num_classes}, D), one row per class"
            )
    else:
        text_embeddings = None  # w3 = 0: no text teacher, nothing stored
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        encoder = RGBTEncoder(
            backbone=m.backbone,
            lora_rank=m.lora_rank,
            lora_alpha=m.lora_alpha,
            lora_dropout=m.lora_dropout,
            lora_sharing=m.lora_sharing,
        )
        d = encoder.d_model
        channels = (d // 8, d // 4, d)
        model = SARTM(
            encoder=encoder,
            fusion=RGBTFusion(channels=channels),
            decoder=build_decoder(transformer_dim=d, num_classes=num_classes),
            aux_head=build_head(
                m.aux_head if loss.w1 > 0 else "none",
                in_channels=channels,
                width=m.aux_channels,
                num_classes=num_classes,
            ),
            criterion=SARTMLoss(
                loss, num_classes=num_classes, feat_dim=d, text_embeddings=text_embeddings
            ),
            predict_mode=m.predict,
        )
    model.decoder.prompt.requires_grad_(False)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def parameter_counts(model: SARTM) -> dict[str, dict[str, int]]:
    """{component: {"total", "trainable"}} for lora, encoder (frozen), fusion, decoder, aux_head,
    and "all"."""

    def count(params) -> dict[str, int]:
        params = list(params)
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }

    enc = list(model.encoder.named_parameters())
    out = {
        "lora": count(p for n, p in enc if ".lora_" in n),
        "encoder (frozen)": count(p for n, p in enc if ".lora_" not in n),
        "fusion": count(model.fusion.parameters()),
        "decoder": count(model.decoder.parameters()),
        "aux_head": count(model.aux_head.parameters() if model.aux_head is not None else []),
    }
    out["all"] = count(model.parameters())
    return out


__all__ = [
    "CheckpointError",
    "ModelError",
    "SARTM",
    "Similarity",
    "build_model",
    "parameter_counts",
]
