"""Fixtures for the data tests: tiny raw datasets in each original layout (see rawdata.py), and
one small prepared synth-mfnet shared by the dataset and sampling tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import rawdata

from sartm.data import synth
from sartm.paths import processed_dir


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding a small synth-mfnet, where a run with data.root=<it> looks."""
    root = tmp_path_factory.mktemp("data")
    synth.generate(
        "synth-mfnet",
        processed_dir("synth-mfnet", root),
        samples={"train": 6, "val": 2, "test": 6},
        width=96,
        seed=0,
    )
    return root


@pytest.fixture
def make_mfnet() -> Callable[..., Path]:
    return rawdata.build_mfnet


@pytest.fixture
def make_pst900() -> Callable[..., Path]:
    return rawdata.build_pst900


@pytest.fixture
def make_fmb() -> Callable[..., Path]:
    return rawdata.build_fmb


@pytest.fixture
def make_custom() -> Callable[..., tuple[Path, Path]]:
    return rawdata.build_custom


@pytest.fixture
def archive_makers() -> dict[str, Callable[..., Path]]:
    return {"zip": rawdata.make_zip, "tar": rawdata.make_tar}


@pytest.fixture
def samples_dir() -> Path:
    """The real sample files beside the repository (skipped where they are absent)."""
    if not rawdata.SAMPLES.is_dir():
        pytest.skip(
            f"real sample files not found at {rawdata.SAMPLES} (only beside a checkout "
            f"that has the ../shared folder)"
        )
    return rawdata.SAMPLES.resolve()
