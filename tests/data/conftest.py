"""Fixtures for the data tests: tiny raw datasets in each original layout (see rawdata.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import rawdata


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
