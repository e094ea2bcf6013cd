"""Synthetic RGB-thermal stand-ins for the built-in datasets (`sartm data synth`).

The real datasets cannot be downloaded everywhere, so the pipeline also runs on procedurally
drawn scenes that keep what the method depends on: the real class names and label ids, the real
split structure and aspect ratio, and scenes in which BOTH modalities matter (sartm.data.drawing).
Each stand-in `synth-<name>` is declared by its dataset's entry in sartm.data.builtin (`StandIn`:
aspect, splits, scene, RNG code, id convention, thermal effects such as PST900's holes).

Determinism: each sample is drawn from `numpy.random.default_rng([seed, code, split, index])`,
so the same seed gives byte-identical files and a sample does not depend on how many others are
generated. A stand-in without a validation split (PST900, FMB) ignores `samples["val"]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sartm.data import builtin
from sartm.data.builtin import Builtin
from sartm.data.common import META_NAME, LayoutWriter, load_meta, written_by_sartm
from sartm.data.drawing import Canvas, finish
from sartm.errors import SartmError

GENERATOR_VERSION = 1
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
# Scenes for pretraining the SAM2 stand-in (sartm.pretrain): a seed stream of their own, so they
# share no image with any split of a stand-in; never written as a dataset split.
PRETRAIN_SPLIT = "pretrain"


class SynthError(SartmError, ValueError):
    """A synthetic dataset that cannot be made as asked (unknown name, bad size or count)."""


def _entry(name: str) -> Builtin:
    """The built-in dataset that the stand-in `name` imitates (its entry has a stand-in)."""
    entries = builtin.stand_ins()
    if name not in entries:
        raise SynthError(f"unknown synthetic dataset {name!r}; known: {', '.join(entries)}")
    return entries[name]


def image_size(name: str, width: int) -> tuple[int, int]:
    """(width, height) of the stand-in's images: the real aspect ratio at the given width."""
    aw, ah = _entry(name).stand_in.aspect
    return width, round(width * ah / aw)


@dataclass(frozen=True)
class SynthSample:
    id: str
    split: str
    subset: str
    condition: str
    rgb: np.ndarray  # (H, W, 3) uint8
    thermal: np.ndarray  # (H, W) uint8
    label: np.ndarray  # (H, W) uint8


def render(name: str, split: str, index: int, *, width: int, seed: int) -> SynthSample:
    """One sample, a pure function of (name, split, index, width, seed)."""
    entry = _entry(name)
    stand_in = entry.stand_in
    if split not in (*stand_in.splits, PRETRAIN_SPLIT):
        raise SynthError(f"{name}: no split {split!r}; splits: {', '.join(stand_in.splits)}")
    w, h = image_size(name, width)
    rng = np.random.default_rng([seed, stand_in.code, SPLIT_CODES[split], index])
    c = Canvas(rng, w, h)
    classes = entry.spec.classes
    condition = stand_in.scene(c, index, {n: i for i, n in enumerate(classes)})
    if split == PRETRAIN_SPLIT:  # a foundation model's photographs: the scene in daylight
        condition = "day"
    rgb, thermal = finish(c, condition)
    if stand_in.thermal_effects is not None:
        stand_in.thermal_effects(rng, thermal)
    if stand_in.day_night_ids:
        subset = "night" if condition == "night" else "day"
        sample_id = f"{split}{index:05d}{'N' if subset == 'night' else 'D'}"
    else:
        subset, sample_id = "", f"{split}{index:05d}"
    return SynthSample(sample_id, split, subset, condition, rgb, thermal, c.label.copy())


def _same_stand_in(out: Path, name: str) -> bool:
    """Whether `out` holds a stand-in `name` that sartm generated (regenerable, so replaceable)."""
    if not written_by_sartm(out, META_NAME):
        return False
    meta = load_meta(out)
    return meta.get("synthetic") is True and meta.get("name") == name


def generate(
    name: str,
    out: str | Path,
    *,
    samples: dict[str, int],
    width: int,
    seed: int,
    force: bool = False,
) -> dict[str, object]:
    """Write the stand-in `name` in the common layout under `out`; returns a short summary. An
    existing `out` is replaced only when sartm wrote it (its meta.json): a stand-in of the same
    name freely (it is made again from its settings, nothing is lost), anything else with `force`."""
    stand_in = _entry(name).stand_in
    if not 32 <= width <= 1024:
        raise SynthError(f"{name}: width must be 32..1024 pixels, got {width}")
    counts = {split: int(samples.get(split, 0)) for split in stand_in.splits}
    for split, n in counts.items():
        if n < 0 or (split != "val" and n < 1) or n > 99999:
            raise SynthError(f"{name}: {split} needs 1..99999 samples, got {n}")
    spec = _entry(name).spec
    w, h = image_size(name, width)
    real = spec.title
    extra = {
        "description": (
            f"SYNTHETIC stand-in for {real}: procedurally drawn RGB-thermal scenes with {real}'s "
            "classes, label ids, splits and aspect ratio. Not real data; results on it are not "
            "comparable to the paper."
        ),
        "imitates": spec.name,
        "generator": {
            "version": GENERATOR_VERSION,
            "seed": seed,
            "width": w,
            "height": h,
            "samples": counts,
        },
        "conditions": {},
    }
    start = time.perf_counter()
    with LayoutWriter(
        Path(out),
        name=name,
        classes=spec.classes,
        palette=spec.palette,
        source=f"sartm synthetic generator v{GENERATOR_VERSION} (seed {seed})",
        synthetic=True,
        extra_meta=extra,
        force=force or _same_stand_in(Path(out), name),
    ) as writer:
        for split, n in counts.items():
            for index in range(n):
                s = render(name, split, index, width=width, seed=seed)
                writer.add(split, s.id, s.rgb, s.thermal, s.label, subset=s.subset)
                extra["conditions"][s.id] = s.condition
    return {
        "out": str(out),
        "splits": {k: v for k, v in counts.items() if v},
        "size": [w, h],
        "seconds": round(time.perf_counter() - start, 2),
    }
