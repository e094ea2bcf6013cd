"""Per-sample augmentation seeds for the training loader.

`SeededSampler` wraps a `DistributedSampler` and yields `(index, seed)` pairs instead of indices;
`RGBTDataset[(index, seed)]` then augments the sample with a fresh `torch.Generator` seeded with
`seed`. The seed is a pure function of (the sampler's seed, epoch, dataset index), so a sample's
augmentation does not depend on the number of DataLoader workers, on whether they persist across
epochs, on the number of DDP processes, nor on where a run was interrupted and resumed: there is
no random stream to carry, checkpoint or re-seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DistributedSampler, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset sample `index` in `epoch` of a run seeded with `seed`."""
    # SeedSequence hashes the triple, so neighbouring (epoch, index) give unrelated streams, unlike
    # seed + epoch * n + index, which repeats seeds across epochs; it takes non-negative ints only.
    entropy = [seed % 2**64, epoch, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


class SeededSampler(Sampler[tuple[int, int]]):
    """The indices of `sampler`, each paired with `sample_seed(sampler.seed, sampler.epoch, i)`.

    `set_epoch` and `len` are the wrapped sampler's; the epoch is read when iteration starts.
    """

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed, epoch = self.sampler.seed, self.sampler.epoch
        for index in self.sampler:
            yield index, sample_seed(seed, epoch, index)
