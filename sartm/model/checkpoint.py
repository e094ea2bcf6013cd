"""Official SAM2 checkpoints: reading them safely, telling their size, reporting what was loaded.

An official file is `torch.save({"model": state_dict})` with keys `image_encoder.*`,
`sam_mask_decoder.*`, `sam_prompt_encoder.*` and the video-memory modules SARTM does not use.
It is always read with `weights_only=True`; anything else (no dict, no "model", a truncated
file, pickled objects that are not tensors) is a `CheckpointError` naming the file.

The size is read from the shapes: patch-embedding width, blocks per stage (stage changes are the
blocks with a `proj`), position-embedding grid, first window, FPN width. SAM 2 and SAM 2.1 have
the same image encoder; only the rest of a full checkpoint tells them apart (SAM 2.1 adds
`no_obj_embed_spatial` and a learned `obj_ptr_tpos_proj`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from sartm import torchfile
from sartm.errors import SartmError
from sartm.model.backbones import BACKBONES, Architecture, architecture

ENCODER_PREFIX = "image_encoder."
SARTM_PARTS = ("image_encoder", "sam_mask_decoder", "sam_prompt_encoder")
SAM21_MARKERS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
UNUSED_REASON = "SAM2 video-memory / tracking module, not used by SARTM"


class CheckpointError(SartmError, ValueError):
    """A checkpoint file or state dict that cannot be used; the message names it and why."""


@dataclass
class LoadReport:
    """What a checkpoint load did. Parts loaded by different modules merge into one report."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it was left out on purpose
    missing: list[str] = field(default_factory=list)  # model weights the checkpoint lacked
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys nobody used
    notes: list[str] = field(default_factory=list)
    source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def merge(self, other: LoadReport) -> LoadReport:
        """Union of both; a key that one part did not expect but another loaded or skipped on
        purpose is not unexpected."""
        loaded = list(dict.fromkeys(self.loaded + other.loaded))
        skipped = {k: v for k, v in {**self.skipped, **other.skipped}.items() if k not in loaded}
        used = set(loaded) | set(skipped)
        unexpected = [k for k in dict.fromkeys(self.unexpected + other.unexpected) if k not in used]
        return LoadReport(
            loaded=loaded,
            skipped=skipped,
            missing=list(dict.fromkeys(self.missing + other.missing)),
            unexpected=unexpected,
            notes=list(dict.fromkeys(self.notes + other.notes)),
            source=self.source or other.source,
        )

    def format(self, *, max_keys: int = 20) -> str:
        def by_part(keys) -> str:
            counts = Counter(k.split(".", 1)[0] for k in keys)
            return ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))

        def listing(keys: list[str]) -> list[str]:
            lines = [f"    {k}" for k in keys[:max_keys]]
            if len(keys) > max_keys:
                lines.append(f"    ... and {len(keys) - max_keys} more")
            return lines

        lines = [f"checkpoint {self.source or '(state dict)'}: {'OK' if self.ok else 'NOT OK'}"]
        lines.append(f"  loaded     {len(self.loaded):5d} tensors ({by_part(self.loaded) or '-'})")
        lines.append(f"  skipped    {len(self.skipped):5d} tensors on purpose")
        for reason, n in Counter(self.skipped.values()).most_common():
            parts = by_part(k for k, r in self.skipped.items() if r == reason)
            lines.append(f"    {n:5d}: {reason} ({parts})")
        lines.append(f"  missing    {len(self.missing):5d}")
        lines += listing(self.missing)
        lines.append(f"  unexpected {len(self.unexpected):5d}")
        lines += listing(self.unexpected)
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_sam2_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The full state dict (`checkpoint["model"]`) of an official SAM2 checkpoint, on the CPU."""
    path = Path(path)
    obj = torchfile.load(path, CheckpointError, "SAM2 checkpoint")
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, expected a dict {{'model': state_dict}}"
        )
    if "model" not in obj:
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path}: no 'model' entry (top-level keys: {keys or 'none'}); official SAM2 "
            "checkpoints are {'model': state_dict}"
        )
    state = obj["model"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: 'model' is not a state dict of named tensors")
    if not any(k.startswith(ENCODER_PREFIX) for k in state):
        raise CheckpointError(f"{path}: no image_encoder.* weights: not a SAM2 checkpoint")
    torchfile.refuse_non_finite(state, path, CheckpointError)
    return state


def split_sam2_state(state: dict[str, Tensor]) -> tuple[dict[str, dict[str, Tensor]], LoadReport]:
    """The parts SARTM uses (`image_encoder`, `sam_mask_decoder`, `sam_prompt_encoder`, keys
    without their prefix) and a report listing everything else as skipped on purpose."""
    parts: dict[str, dict[str, Tensor]] = {p: {} for p in SARTM_PARTS}
    report = LoadReport()
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in parts and rest:
            parts[head][rest] = value
        else:
            report.skipped[key] = UNUSED_REASON
    return parts, report


_BLOCK = re.compile(r"trunk\.blocks\.(\d+)\.")


def architecture_of_state(state: dict[str, Tensor], *, source: str = "state dict") -> Architecture:
    """The image-encoder hyper-parameters that the weights' shapes fix (keys with or without the
    `image_encoder.` prefix)."""
    enc = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()}
    try:
        embed = enc["trunk.patch_embed.proj.weight"]
        pos, window = enc["trunk.pos_embed"], enc["trunk.pos_embed_window"]
        blocks = sorted({int(m.group(1)) for k in enc if (m := _BLOCK.match(k))})
        necks = [enc[k] for k in enc if re.fullmatch(r"neck\.convs\.\d+\.conv\.weight", k)]
    except KeyError as exc:
        raise CheckpointError(
            f"{source}: no SAM2 Hiera image encoder ({exc.args[0]} missing)"
        ) from exc
    if not blocks or not necks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"{source}: incomplete SAM2 image encoder (blocks {blocks[:5]}...)")
    starts = [0] + [i for i in blocks if f"trunk.blocks.{i}.proj.weight" in enc]
    stages = tuple(b - a for a, b in zip(starts, starts[1:] + [len(blocks)]))
    return Architecture(
        embed_dim=int(embed.shape[0]),
        stages=stages,
        pos_embed_size=(int(pos.shape[-2]), int(pos.shape[-1])),
        first_window=int(window.shape[-1]),
        d_model=int(necks[0].shape[0]),
    )


def compatible_backbones(state: dict[str, Tensor], *, source: str = "state dict") -> list[str]:
    """Every backbone name whose image encoder has exactly these weight shapes."""
    found = architecture_of_state(state, source=source)
    return [name for name in BACKBONES if architecture(name) == found]


def describe_state(found: Architecture) -> str:
    names = [name for name in BACKBONES if architecture(name) == found]
    return " / ".join(names) if names else "unknown-size"


def detect_backbone(state: dict[str, Tensor], *, source: str = "state dict") -> str:
    """The backbone name of a SAM2 state dict (full checkpoint or image-encoder part).

    SAM 2 and SAM 2.1 share the image encoder: a full checkpoint is told apart by SAM 2.1's extra
    weights; an image-encoder-only state gives the SAM 2 name (both fit, see
    `compatible_backbones`)."""
    names = compatible_backbones(state, source=source)
    if not names:
        found = architecture_of_state(state, source=source)
        raise CheckpointError(
            f"{source}: image encoder ({found.describe()}) matches no known size "
            f"({', '.join(BACKBONES)})"
        )
    if len(names) == 1:
        return names[0]
    full = any(k.split(".", 1)[0] not in SARTM_PARTS for k in state)
    sam21 = any(k in state for k in SAM21_MARKERS)
    family = "sam2.1" if full and sam21 else "sam2"
    return next((n for n in names if BACKBONES[n].family == family), names[0])
