"""Atomic checkpoint writes, safe loading, RNG round-trips."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sartm.engine import run_checkpoint as ck


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.atomic_save({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["epoch"] == 1  # the previous checkpoint survived intact
    assert list(tmp_path.iterdir()) == [path]  # and no temp file is left behind


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".tmp-last.pt.abc").write_bytes(b"partial")
    (tmp_path / "last.pt").write_bytes(b"x")
    assert [p.name for p in ck.remove_stale_temp_files(tmp_path)] == [".tmp-last.pt.abc"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_refuses_bad_files(tmp_path):
    with pytest.raises(ck.TrainingCheckpointError, match="missing.pt: no such sartm checkpoint"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    ck.atomic_save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(
        ck.TrainingCheckpointError, match="truncated.pt: not a readable sartm checkpoint, truncated"
    ):
        ck.load_checkpoint(truncated)
    # pickled objects (real payloads): tests/test_torchfile.py
    incomplete = tmp_path / "incomplete.pt"
    ck.atomic_save({"epoch": 1}, incomplete)
    with pytest.raises(ck.TrainingCheckpointError, match="missing \\['model'\\]"):
        ck.load_checkpoint(incomplete, required=("epoch", "model"))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    ck.seed_everything(123)
    random.random(), np.random.rand(), torch.rand(1)  # move every generator
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    ck.atomic_save({"rng": ck.rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    ck.seed_everything(999)
    ck.set_rng_state(ck.load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == expected


def test_config_differences_names_keys():
    old = {"train": {"lr": 1e-4, "epochs": 5}, "model": {"lora_rank": 16}}
    new = {"train": {"lr": 1e-3, "epochs": 5}, "model": {"lora_rank": 16, "extra": 1}}
    assert ck.config_differences(old, new) == [
        "model.extra: '<absent>' -> 1",
        "train.lr: 0.0001 -> 0.001",
    ]


def test_sha256_file(tmp_path):
    import hashlib

    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert ck.sha256_file(tmp_path / "f") == hashlib.sha256(b"abc" * 1000).hexdigest()
