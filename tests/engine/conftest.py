"""Engine fixtures: tiny synthetic datasets made by `sartm data synth`, and the REAL run
configuration of params.yaml (ci preset) shrunk to a micro model and 64-pixel images."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import sartm
from sartm import config as cfgmod
from sartm.cli import cli

WIDTH = 64


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """synth-pst900 (train 8 / test 4) and synth-mfnet (train 8 / val 4 / test 6, day + night)."""
    root = tmp_path_factory.mktemp("data")
    runner = CliRunner()
    params = str(cfgmod.PROJECT_ROOT / "params.yaml")
    for name, counts in (
        ("synth-pst900", ["--samples-train", "8", "--samples-test", "4"]),
        ("synth-mfnet", ["--samples-train", "8", "--samples-val", "4", "--samples-test", "6"]),
    ):
        out = root / "processed" / name
        args = ["data", "synth", name, "--out", str(out), "--width", str(WIDTH), "--params", params]
        result = runner.invoke(cli, [*args, *counts])
        assert result.exit_code == 0, result.output
    return root


def make_cfg(
    tmp_path: Path,
    data_root: Path,
    *overrides: str,
    dataset: str = "pst900",
    run: str = "no-language",
    preset: str = "ci",
) -> cfgmod.Config:
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    base = [
        f"data.root={data_root}",
        "model.backbone=test_hiera_micro",
        "model.checkpoint=null",
        "train.val_every=1",
        "train.epochs=2",
        "train.batch_size=4",
        "train.warmup_epochs=1",
        f"data.crop_size={WIDTH}",
        f"data.eval_size={WIDTH}",
        "train.similarity_epochs=[1]",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_root={tmp_path / 'mlartifacts'}",
    ]
    return cfgmod.resolve(
        params, dataset=dataset, run=run, preset=preset, overrides=[*base, *overrides]
    )


@pytest.fixture
def cfg_factory(tmp_path, data_root):
    def factory(*overrides: str, **kwargs) -> cfgmod.Config:
        return make_cfg(tmp_path, data_root, *overrides, **kwargs)

    return factory


@pytest.fixture(scope="session")
def trained_mfnet(tmp_path_factory, data_root):
    """One trained synth-mfnet run (2 epochs; val split: best.pt selected on val), shared by the
    evaluation and prediction tests: (cfg, results root)."""
    from sartm.engine.train import train

    tmp = tmp_path_factory.mktemp("mfnet_run")
    cfg = make_cfg(
        tmp,
        data_root,
        "eval.save_predictions=100",
        "eval.tsne_pixels=60",
        dataset="mfnet",
        run="no-language",
    )
    train(cfg, results_root=tmp / "results", quiet=True)
    return cfg, tmp / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_tracking_ui(
    config_file: Path, cwd: Path, log: Path, timeout: float = 120
) -> tuple[subprocess.Popen, int]:
    """`sartm tracking ui` as a user starts it, on a free loopback port, once it answers
    /health: (the process, its port). Its output goes to `log`."""
    port = free_port()
    # The subprocess imports the sartm under test, not whichever one the venv has installed.
    path = [os.path.dirname(os.path.dirname(sartm.__file__)), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        ui = subprocess.Popen(
            [sys.executable, "-m", "sartm", "tracking", "ui", "--config", str(config_file),
             "--port", str(port)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:  # bounded wait for the server to answer
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return ui, port
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if ui.poll() is not None or time.monotonic() > deadline:
                ui.terminate()  # sartm tracking ui stops its server's process group
                ui.wait(30)
                tail = log.read_text()[-3000:]
                raise AssertionError(f"sartm tracking ui did not start:\n{tail}") from None
            time.sleep(1)
