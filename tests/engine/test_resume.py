"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from sartm.config import save_config
from sartm.engine import checkpointing as ck
from sartm.engine.train import train

# Runs `train` on a config file and SIGKILLs itself while loading the 13th training sample:
# epoch 2, second batch (8 samples and 2 iterations per epoch), after step 3 and before step 4.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import sartm.data.dataset as dataset_module
    from sartm.config import load_config
    from sartm.engine.train import train

    real_build, calls = dataset_module.build_dataset, [0]

    class Killing(dataset_module.RGBTDataset):
        def __getitem__(self, index):
            calls[0] += 1
            if calls[0] == 13:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__getitem__(index)

    def build(cfg, split, train, **kw):
        ds = real_build(cfg, split, train, **kw)
        if train:
            ds.__class__ = Killing
        return ds

    dataset_module.build_dataset = build
    train(load_config(sys.argv[1]), quiet=True)
    """
)
TIMING = {"images_per_s", "epoch_time_s"}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(cfg_factory, tmp_path):
    cfg = cfg_factory("loss.w3=0", run="no-language")
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    workdir = tmp_path / "interrupted"
    workdir.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(config_file)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = workdir / "results" / "train" / "pst900" / "no-language"
    assert ck.load_checkpoint(run_dir / "last.pt")["epoch"] == 1  # the kill came in epoch 2

    resumed = subprocess.run(
        [sys.executable, "-m", "sartm", "train", "--config", str(config_file), "--quiet"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming pst900/no-language" in resumed.stderr + resumed.stdout

    straight = train(cfg, results_root=tmp_path / "straight", quiet=True)
    after = json.loads((run_dir / "train_metrics.json").read_text())
    strip = lambda row: {k: v for k, v in row.items() if k not in TIMING}  # noqa: E731
    assert strip(after["final"]) == strip(straight["final"])  # bitwise-equal floats
    a = ck.load_checkpoint(run_dir / "last.pt")
    b = ck.load_checkpoint(tmp_path / "straight" / "train" / "pst900" / "no-language" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [strip(r) for r in a["history"]] == [strip(r) for r in b["history"]]
