"""Model fixtures: official-format SAM2 checkpoints made by sam2's own builder (random weights)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def sam2_checkpoint(tmp_path_factory) -> Callable[[str], Path]:
    """`sam2_checkpoint("configs/sam2/sam2_hiera_t.yaml")` -> a `{"model": state_dict}` file laid
    out exactly like Meta's, built once per session and config."""
    from sam2.build_sam import build_sam2

    made: dict[str, Path] = {}

    def make(config: str = "configs/sam2/sam2_hiera_t.yaml") -> Path:
        if config not in made:
            torch.manual_seed(0)
            model = build_sam2(config, ckpt_path=None, device="cpu", mode="eval")
            path = tmp_path_factory.mktemp("sam2") / (Path(config).stem + ".pt")
            torch.save({"model": model.state_dict()}, path)
            made[config] = path
        return made[config]

    return make
