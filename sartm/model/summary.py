"""What `sartm model summary` shows: parameters by component, shapes, checkpoint fit.

Real sizes are inspected on the meta device (no weights allocated, no computation) unless a
checkpoint must be loaded; the tiny test sizes run a real forward pass on a zero input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import init_empty_weights

from sartm.config import Config
from sartm.model.sam2_weights import LoadReport
from sartm.model.sartm import SARTM, build_model, parameter_counts


@dataclass
class ModelSummary:
    cfg: Config
    num_classes: int
    d_model: int
    counts: dict[str, dict[str, int]]
    shapes: dict[str, tuple[int, ...]]
    shape_source: str
    report: LoadReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok

    def format(self) -> str:
        m, loss = self.cfg.model, self.cfg.loss
        lines = [
            f"SARTM {self.cfg.run_id} ({self.cfg.preset} preset, data {self.cfg.data.dataset}"
            f"{', SYNTHETIC' if self.cfg.synthetic else ''})",
            f"  backbone {m.backbone} (d = {self.d_model}), {self.num_classes} classes, "
            f"LoRA rank {m.lora_rank} alpha {m.lora_alpha:g} ({m.lora_sharing}), "
            f"aux head {m.aux_head}, predict {m.predict}",
            "  loss: "
            + ", ".join(
                f"{term} x {w:g}"
                for term, w in zip(
                    ("ce_s0", "ce_s1", "l_cr", "l_se"), (loss.w0, loss.w1, loss.w2, loss.w3)
                )
                if w > 0
            )
            + f" ({loss.ce} CE)",
            "",
            f"  {'parameters':<18}{'total':>14}{'trainable':>14}",
        ]
        for name, c in self.counts.items():
            label = "all" if name == "all" else name
            lines.append(f"  {label:<18}{c['total']:>14,}{c['trainable']:>14,}")
        lines += ["", f"  shapes ({self.shape_source}):"]
        lines += [f"    {name:<22}{tuple(shape)}" for name, shape in self.shapes.items()]
        lines += [f"  note: {n}" for n in self.notes]
        if self.report is not None:
            lines += ["", self.report.format()]
        return "\n".join(lines)


def _shapes(model: SARTM, size: int, device: str) -> dict[str, tuple[int, ...]]:
    x = torch.zeros(1, 3, size, size, device=device)
    model.eval()
    with torch.no_grad():
        f0, f1, fn = model.fused_features(x, x)
        out = model(x, x)
    shapes = {
        "rgb, thermal": tuple(x.shape),
        "F~_0 (FFP, stride 4)": tuple(f0.shape),
        "F~_1 (IFP, stride 8)": tuple(f1.shape),
        "F~_n (SFM, stride 16)": tuple(fn.shape),
    }
    shapes.update({name: tuple(out[name].shape) for name in ("s0", "s1") if name in out})
    return shapes


def summarise(cfg: Config, num_classes: int, *, checkpoint: Path | None = None) -> ModelSummary:
    """Build the model of `cfg` (on the meta device for real sizes without a checkpoint), count
    its parameters, compute the shapes at the crop size and load `checkpoint` if given.

    Raises `CheckpointError` when the checkpoint is unreadable or of another size."""
    notes = []
    text = None
    if cfg.loss.w3 > 0:  # the text teacher holds no parameters: a placeholder is enough here
        text = torch.zeros(num_classes, 1)
        notes.append("text teacher not loaded (inspection only; it holds no parameters)")
    tiny = cfg.model.backbone.startswith("test_")
    if tiny or checkpoint is not None:
        model = build_model(cfg, num_classes, text)
        device = "cpu"
    else:
        with init_empty_weights():
            model = build_model(cfg, num_classes, text)
        model, device = model.to("meta"), "meta"
    report = model.load_sam2_checkpoint(checkpoint) if checkpoint is not None else None
    size = cfg.data.crop_size
    if tiny:
        source = f"forward pass on a zero input, one image, crop {size}x{size}"
    else:
        source = f"one image, crop {size}x{size}, on the meta device"
        model = model.to("meta")
        device = "meta"
    return ModelSummary(
        cfg=cfg,
        num_classes=num_classes,
        d_model=model.encoder.d_model,
        counts=parameter_counts(model),
        shapes=_shapes(model, size, device),
        shape_source=source,
        report=report,
        notes=notes,
    )
