"""`torchrun --nproc_per_node 2` (gloo, CPU) trains like one process on the same global batch.

Both see the same samples per step (one DistributedSampler permutation; batch_size is global)
and average the same gradients, so the only differences come from what is computed per rank by
design: BatchNorm batch statistics (2 images per rank instead of 4), OHEM's pixel selection and
the class prototypes. This test switches the latter two off (plain CE, no L_cr / L_se) and the
augmentation (deterministic crops), so the remaining gap is BatchNorm's, which must stay small:
the trained weights differ by < 10% of the distance they moved from their start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from sartm.config import save_config
from sartm.engine import checkpointing as ck
from sartm.engine.train import train


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(cfg_factory, tmp_path):
    cfg = cfg_factory(
        "loss.ce=plain",
        "loss.w1=0",
        "loss.w2=0",
        "loss.w3=0",
        "data.scale_range=[0.75,0.75]",  # 64x48 MFNet images stay 64x48: no random crop offset
        "data.flip_p=0",
        "data.jitter_p=0",
        "data.blur_p=0",
        "train.lr=0.001",
        dataset="mfnet",
        run="no-aux",
    )
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    workdir = tmp_path / "ddp"
    workdir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "sartm",
        "train",
        "--config",
        str(config_file),
        "--quiet",
    ]
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "2 process(es)" in done.stdout + done.stderr

    single = train(cfg, results_root=tmp_path / "single", quiet=True)
    run = ("train", "mfnet", "no-aux", "last.pt")
    a = ck.load_checkpoint(workdir.joinpath("results", *run))
    b = ck.load_checkpoint(tmp_path.joinpath("single", *run))
    assert a["world_size"] == 2 and b["world_size"] == 1 and a["step"] == b["step"] == 4

    initial = _initial_parameters(cfg, num_classes=9)
    moved = gap = 0.0
    for key, start in initial.items():  # trained parameters only (BatchNorm stats are per rank)
        moved += float((b["model"][key] - start).norm() ** 2)
        gap += float((b["model"][key] - a["model"][key]).norm() ** 2)
    assert moved > 0 and gap**0.5 < 0.1 * moved**0.5, (gap**0.5, moved**0.5)
    ddp_miou = a["history"][-1]["val_miou"]
    assert abs(ddp_miou - single["final"]["val_miou"]) < 0.05


def _initial_parameters(cfg, *, num_classes: int) -> dict[str, torch.Tensor]:
    """The trainable parameters of the freshly built model (the common start point)."""
    from sartm.engine.modelio import build

    model, _ = build(cfg, num_classes, None)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
