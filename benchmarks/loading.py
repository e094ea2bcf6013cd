"""Data-loading throughput: the real Dataset with the training augmentation, per worker count.

Reads the run's prepared dataset when it exists (`data/processed/<dataset>/`); otherwise writes
the synthetic stand-in into a scratch folder at the scale of the requested crop, so decoding and
augmenting cost about what they would on the real images. The scale: the real dataset's width
times crop / the paper's crop for that dataset (PST900 at crop 1280 -> 1280-pixel-wide images,
MFNet at crop 800 -> 640), within the generator's 32..1024 pixels. Batches come from a
`DataLoader` built like the engine's (batch `train.batch_size`, pinned memory on a GPU).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from sartm import paths
from sartm.config import SYNTHETIC_PREFIX, Config
from sartm.data import builtin
from sartm.data.synth import generate, image_size

PAPER_CROP = {"mfnet": 800, "pst900": 1280, "fmb": 800}  # params.yaml's paper preset
SYNTH_WIDTH_RANGE = (32, 1024)
WORKER_COUNTS = (0, 2, 4, 8)
PREFETCH_FACTOR = 2  # torch's default, as the engine's loaders use it


def synth_width(cfg: Config) -> int:
    """Width of stand-in images whose size relates to the crop as the real images do."""
    return max(SYNTH_WIDTH_RANGE[0], min(SYNTH_WIDTH_RANGE[1], _scaled_width(cfg)))


def _scaled_width(cfg: Config) -> int:
    """The real width times crop / the paper's crop (MFNet's 640 and 800 for other datasets)."""
    logical = cfg.data.dataset.removeprefix(SYNTHETIC_PREFIX)
    entry = builtin.BUILTIN.get(logical)
    native = entry.spec.native_size[0] if entry else 640
    return round(native * cfg.data.crop_size / PAPER_CROP.get(logical, 800))


def prepare_data(
    cfg: Config, scratch: Path, *, samples: int, width: int | None = None
) -> tuple[Config, dict[str, Any]]:
    """(the config that reads the data to load, a description of that data)."""
    real = paths.processed_dir(cfg.data.dataset, Path(cfg.data.root))
    if (real / "meta.json").is_file() and width is None:
        return cfg, {"source": "prepared", "dataset": cfg.data.dataset, "path": str(real)}
    logical = cfg.data.dataset.removeprefix(SYNTHETIC_PREFIX)
    name = SYNTHETIC_PREFIX + logical
    width = width or synth_width(cfg)
    root = Path(scratch) / "data"
    started = time.perf_counter()
    generate(
        name,
        paths.processed_dir(name, root),
        samples={"train": samples, "val": 0, "test": 1},
        width=width,
        seed=cfg.synth.seed,
    )
    w, h = image_size(name, width)
    note = ""
    if logical in builtin.BUILTIN and width != _scaled_width(cfg):
        note = f"width limited to the generator's {SYNTH_WIDTH_RANGE} pixels"
    described = {
        "source": "synthetic (generated for this benchmark)",
        "dataset": name,
        "samples": samples,
        "image_size": [w, h],
        "generate_s": round(time.perf_counter() - started, 2),
        "note": note,
    }
    return cfg.with_overrides([f"data.root={root}", f"data.dataset={name}"]), described


def measure_loading(
    cfg: Config,
    *,
    batches: int,
    worker_counts: tuple[int, ...] = WORKER_COUNTS,
    pin_memory: bool = False,
) -> list[dict[str, Any]]:
    """Steady-state samples/s per worker count.

    The loader's read-ahead would flatter the workers: while the first batch is awaited they
    fill their queues (`prefetch_factor` batches each). So the first 1 + workers x
    prefetch_factor batches are drawn untimed (their time, with the workers' start-up, is
    `startup_s`); by then the queues are drained and the timed batches (at least `batches`,
    and two per worker) arrive at the rate the workers produce them.
    """
    from sartm.data.dataset import build_dataset
    from sartm.data.sampling import sample_seed

    dataset = build_dataset(cfg, "train", train=True)
    batch = cfg.train.batch_size
    rows = []
    for workers in worker_counts:
        untimed = 1 + workers * PREFETCH_FACTOR
        timed = max(batches, 2 * workers)
        indices = RandomSampler(
            dataset,
            replacement=True,
            num_samples=batch * (untimed + timed),
            generator=torch.Generator().manual_seed(cfg.train.seed),
        )
        # (index, seed) pairs, as the engine's SeededSampler gives: per-sample seeded augmentation
        sampler = [(i, sample_seed(cfg.train.seed, 0, n)) for n, i in enumerate(indices)]
        loader = DataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=pin_memory,
            drop_last=True,
            prefetch_factor=PREFETCH_FACTOR if workers else None,
        )
        started = time.perf_counter()
        iterator = iter(loader)
        for _ in range(untimed):
            next(iterator)
        warm = time.perf_counter()
        for _ in range(timed):
            next(iterator)
        seconds = time.perf_counter() - warm
        del iterator, loader
        rows.append(
            {
                "workers": workers,
                "untimed_batches": untimed,
                "batches": timed,
                "startup_s": warm - started,
                "seconds": seconds,
                "samples_per_s": timed * batch / seconds,
            }
        )
    return rows
