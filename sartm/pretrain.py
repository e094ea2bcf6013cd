"""A pretrained stand-in for SAM2, made offline (`sartm pretrain`): the demo's foundation encoder.

SARTM adapts a *pretrained* foundation model; the offline demo cannot download SAM2's weights,
and LoRA on a frozen random encoder learns next to nothing. So the pipeline pretrains the
demo-size SAM2 model itself, once, and writes it in the official checkpoint layout
(`{"model": {"image_encoder.*", "sam_mask_decoder.*", "sam_prompt_encoder.*"}}`, qkv fused), which
the demo then loads through `model.checkpoint` exactly like the official weights.

What it is trained on, and how it differs from SAM2 (every output that uses it says so):

- RGB only, like SAM2 (the thermal branch reuses the RGB-pretrained encoder, as in the paper);
  some images are shown in grey so that the features do not depend on colour alone.
- Scenes of the synthetic generator's own `pretrain` split of all three stand-ins: a split of its
  own seed stream, so no image is shared with any stand-in's train, val or test split.
- Objective: semantic segmentation over the union of the three stand-ins' classes through SAM2's
  mask decoder with one mask token per class (SAM2 is trained for promptable masks on SA-1B and
  SA-V). SARTM later drops these tokens and their hypernetwork MLPs (it starts them fresh, as it
  does with the official weights); what it keeps is the encoder, the two-way transformer, the
  upscaling path, `conv_s0` / `conv_s1` and the prompt-free embeddings.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from sartm.data.builtin import stand_in_names
from sartm.data.spec import IGNORE_INDEX, spec_for
from sartm.data.synth import PRETRAIN_SPLIT, render
from sartm.data.transforms import TrainTransform
from sartm.errors import SartmError
from sartm.model.backbones import build_image_encoder
from sartm.model.decoder import PROMPT_PREFIX, build_decoder
from sartm.model.encoder import NoPositionEncoding
from sartm.model.sam2_weights import sha256_of

FORMAT = "sartm-synthetic-sam2-stand-in"
DESCRIPTION = (
    "SYNTHETIC stand-in for SAM2 (not Meta's weights): a {backbone} SAM2 image encoder and mask "
    "decoder pretrained by sartm on synthetic RGB scenes"
)


class PretrainError(SartmError, ValueError):
    """Settings the stand-in cannot be pretrained with; the message names the setting."""


@dataclass(frozen=True)
class PretrainSettings:
    """What determines the stand-in (all of it is recorded in the checkpoint)."""

    backbone: str = "test_hiera_tiny"
    sources: tuple[str, ...] = field(default_factory=stand_in_names)
    samples_per_source: int = 400
    width: int = 160
    seed: int = 0
    steps: int = 600
    batch_size: int = 16
    crop_size: int = 128
    lr: float = 1.0e-3
    weight_decay: float = 0.01
    grey_p: float = 0.25
    threads: int = 2

    def __post_init__(self) -> None:
        known = stand_in_names()
        unknown = [s for s in self.sources if s not in known]
        if unknown or not self.sources:
            raise PretrainError(
                f"pretrain.sources: {unknown or 'empty'}; allowed: {', '.join(known)}"
            )
        for name in ("samples_per_source", "steps", "batch_size", "crop_size", "threads"):
            if int(getattr(self, name)) < 1:
                raise PretrainError(f"pretrain.{name} must be >= 1, got {getattr(self, name)}")


def union_classes(sources: tuple[str, ...]) -> list[str]:
    """Every class name of the sources, background first ("unlabeled" is MFNet's background)."""
    names = ["background"]
    for source in sources:
        for name in spec_for(source).classes[1:]:
            if name not in names:
                names.append(name)
    return names


class StandIn(nn.Module):
    """SAM2's image encoder and mask decoder, wired as SAM2 calls them without prompts.

    Attribute names give the official key prefixes: `image_encoder.*` directly, and the decoder's
    `prompt.*` part maps to `sam_prompt_encoder.*` (see `sam2_state_dict`)."""

    def __init__(self, backbone: str, num_classes: int) -> None:
        super().__init__()
        self.image_encoder = build_image_encoder(backbone)
        self.image_encoder.neck.position_encoding = NoPositionEncoding()
        self.sam_mask_decoder = build_decoder(
            transformer_dim=self.image_encoder.neck.d_model, num_classes=num_classes
        )

    def forward(self, images: Tensor) -> Tensor:
        s4, s8, s16 = self.image_encoder(images)["backbone_fpn"]
        dec = self.sam_mask_decoder
        f0, f1 = dec.project_high_res(s4, s8)
        logits = dec(s16, f0, f1)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def sam2_state_dict(self) -> dict[str, Tensor]:
        """The weights under the official SAM2 key names."""
        out = {f"image_encoder.{k}": v for k, v in self.image_encoder.state_dict().items()}
        for key, value in self.sam_mask_decoder.state_dict().items():
            if key.startswith("prompt."):
                out[PROMPT_PREFIX + key.removeprefix("prompt.")] = value
            else:
                out[f"sam_mask_decoder.{key}"] = value
        return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _scenes(settings: PretrainSettings, classes: list[str]) -> list[dict[str, Tensor]]:
    """The pretraining pool: RGB and the label mapped into the union classes, as uint8 tensors."""
    pool = []
    for source in settings.sources:
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for i, name in enumerate(spec_for(source).classes):
            lut[i] = 0 if i == 0 else classes.index(name)
        for index in range(settings.samples_per_source):
            s = render(source, PRETRAIN_SPLIT, index, width=settings.width, seed=settings.seed)
            pool.append(
                {
                    "rgb": torch.from_numpy(s.rgb).permute(2, 0, 1).contiguous(),
                    "label": torch.from_numpy(lut[s.label]),
                }
            )
    return pool


def _batch(pool, transform: TrainTransform, indices, grey_p: float, g: torch.Generator):
    images, labels = [], []
    for i in indices:
        rgb = pool[i]["rgb"]
        if float(torch.rand((), generator=g)) < grey_p:
            rgb = rgb.float().mean(0, keepdim=True).round().to(torch.uint8).expand(3, -1, -1)
        sample = {"rgb": rgb, "thermal": rgb[:1], "label": pool[i]["label"]}
        out = transform(sample, generator=g)
        images.append(out["rgb"])
        labels.append(out["label"])
    return torch.stack(images), torch.stack(labels)


def is_stand_in(path: str | Path | None) -> bool:
    """True for a checkpoint this module wrote (its summary beside it says so): SYNTHETIC."""
    if not path:
        return False
    summary = Path(f"{path}.json")
    try:
        return json.loads(summary.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def pretrain_stand_in(
    settings: PretrainSettings, out: str | Path, *, quiet: bool = False
) -> dict[str, Any]:
    """Pretrain the stand-in and write `out` (official layout), `out.sha256` and `out.json`."""
    out = Path(out)
    torch.set_num_threads(settings.threads)
    classes = union_classes(settings.sources)
    started = time.perf_counter()
    pool = _scenes(settings, classes)
    g = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = StandIn(settings.backbone, len(classes))
    transform = TrainTransform(crop_size=settings.crop_size)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
    )
    warmup = max(1, settings.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(s, settings.steps) / settings.steps))
        ),
    )
    model.train()
    order = torch.empty(0, dtype=torch.long)
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc="pretraining the SAM2 stand-in", disable=quiet)
    for _ in bar:
        if len(order) < settings.batch_size:
            order = torch.cat([order, torch.randperm(len(pool), generator=g)])
        idx, order = order[: settings.batch_size], order[settings.batch_size :]
        images, labels = _batch(pool, transform, idx.tolist(), settings.grey_p, g)
        loss = F.cross_entropy(model(images), labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach().item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    seconds = time.perf_counter() - started
    meta = {
        "format": FORMAT,
        "synthetic": True,
        "description": DESCRIPTION.format(backbone=settings.backbone),
        "settings": {**asdict(settings), "sources": list(settings.sources)},
        "classes": classes,
        "final_loss": float(np.mean(losses[-20:])),
        "seconds": round(seconds, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save({"model": model.sam2_state_dict(), "sartm_stand_in": meta}, tmp)
    sha = sha256_of(tmp)
    tmp.replace(out)
    out.with_name(out.name + ".sha256").write_text(f"{sha}  {out.name}\n")
    summary = {**meta, "path": str(out), "sha256": sha}
    out.with_name(out.name + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
