"""Training augmentation is a pure function of (seed, epoch, sample index): identical whatever the
number of DataLoader workers, their persistence across epochs and the number of processes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from sartm.config import PROJECT_ROOT, load_params, resolve
from sartm.data.dataset import RGBTDataset, build_dataset
from sartm.data.sampling import SeededSampler, sample_seed

KEYS = ("rgb", "thermal", "label")
EPOCHS = 2


@pytest.fixture(scope="module")
def train_set(data_root) -> RGBTDataset:
    """6 training samples of synth-mfnet, with every augmentation step likely to fire."""
    cfg = resolve(
        load_params(PROJECT_ROOT / "params.yaml"),
        dataset="mfnet",
        preset="ci",
        overrides=[
            f"data.root={data_root}",
            "data.crop_size=64",
            "data.jitter_p=0.5",
            "data.blur_p=0.5",
        ],
    )
    return build_dataset(cfg, "train", train=True)


def _sampler(ds, replicas: int = 1, rank: int = 0) -> SeededSampler:
    return SeededSampler(
        DistributedSampler(
            ds, num_replicas=replicas, rank=rank, shuffle=True, seed=3, drop_last=True
        )
    )


def _epoch(loader: DataLoader) -> dict[str, dict[str, torch.Tensor]]:
    """{id: {rgb, thermal, label}} in the order the loader yielded them."""
    out = {}
    for batch in loader:
        for i, sample_id in enumerate(batch["id"]):
            out[sample_id] = {k: batch[k][i] for k in KEYS}
    return out


def _fresh(ds, workers: int, replicas: int = 1, rank: int = 0) -> list[dict]:
    """A new loader (new workers) every epoch, as an interrupted and resumed run has."""
    epochs = []
    for epoch in range(EPOCHS):
        torch.manual_seed(100 + 10 * epoch + workers + rank)  # the global RNG plays no part
        sampler = _sampler(ds, replicas, rank)
        sampler.set_epoch(epoch)
        epochs.append(_epoch(DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers)))
    return epochs


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[i][k], b[i][k]) for i in a for k in KEYS)


def test_augmentation_ignores_workers_persistence_and_processes(train_set):
    reference = _fresh(train_set, workers=0)
    assert len(reference[0]) == len(train_set) == 6

    assert all(map(_same, _fresh(train_set, workers=2), reference))

    sampler = _sampler(train_set)
    persistent = DataLoader(
        train_set, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True
    )
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        assert _same(_epoch(persistent), reference[epoch]), epoch

    # Two DDP ranks: each augments its share of the permutation exactly as one process does.
    ranks = [_fresh(train_set, workers=1, replicas=2, rank=r) for r in (0, 1)]
    for epoch in range(EPOCHS):
        merged = {**ranks[0][epoch], **ranks[1][epoch]}
        assert _same(dict(sorted(merged.items())), dict(sorted(reference[epoch].items())))

    # ... and each epoch draws new augmentations of every sample.
    first, second = reference
    assert all(not torch.equal(first[i]["rgb"], second[i]["rgb"]) for i in first)


def test_sampler_pairs_the_wrapped_indices_with_their_seeds(train_set):
    inner = DistributedSampler(train_set, num_replicas=2, rank=1, shuffle=True, seed=3)
    sampler = SeededSampler(inner)
    sampler.set_epoch(4)
    assert inner.epoch == 4 and len(sampler) == len(inner) == 3
    pairs = list(sampler)
    assert [i for i, _ in pairs] == list(inner)
    assert [s for _, s in pairs] == [sample_seed(3, 4, i) for i in list(inner)]
    assert sample_seed(3, 4, 0) != sample_seed(3, 5, 0) != sample_seed(4, 4, 0)
    assert sample_seed(-1, 0, 0) == sample_seed(-1, 0, 0) >= 0  # negative run seeds are fine


def test_a_seeded_item_ignores_the_global_rng(train_set):
    torch.manual_seed(0)
    a = train_set[(2, 11)]
    torch.manual_seed(1)
    b, other = train_set[(2, 11)], train_set[(2, 12)]
    assert all(torch.equal(a[k], b[k]) for k in KEYS) and a["id"] == train_set.ids[2]
    assert not torch.equal(a["rgb"], other["rgb"])
    torch.manual_seed(5)
    c = train_set[2]  # a plain index still draws from the global RNG
    torch.manual_seed(5)
    assert torch.equal(c["rgb"], train_set[2]["rgb"])
