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

import sartm
from sartm.config import save_config
from sartm.engine import checkpointing as ck
from sartm.engine.train import train

# Runs `train` on a config file and SIGKILLs itself (the main process, whatever the number of
# data workers) when the 4th training batch reaches the device: epoch 2, second batch (8 samples
# and 2 iterations per epoch), after step 3 and before step 4.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import sartm.engine.train as train_module
    from sartm.config import load_config

    real_to_device, calls = train_module._to_device, [0]

    def to_device(*args):
        calls[0] += 1
        if calls[0] == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_to_device(*args)

    train_module._to_device = to_device
    train_module.train(load_config(sys.argv[1]), quiet=True)
    """
)
TIMING = {"images_per_s", "epoch_time_s"}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(cfg_factory, tmp_path, workers):
    """With workers=2 the interrupted run uses 2 persistent data workers and the uninterrupted
    one none: augmentation depends on neither (data.num_workers is outside the identity)."""
    cfg = cfg_factory("loss.w3=0", run="no-language")
    config_file = tmp_path / "config.yaml"
    save_config(cfg_factory("loss.w3=0", f"data.num_workers={workers}"), config_file)
    workdir = tmp_path / "interrupted"
    workdir.mkdir()
    # The subprocesses import the sartm under test, not whichever one the venv has installed.
    path = [os.path.dirname(os.path.dirname(sartm.__file__)), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, path))}

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
