"""The runs of a small training, read back through an `mlflow server` REST API on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from sartm.engine.train import train


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _call(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_mlflow_server_serves_the_training_runs(cfg_factory, tmp_path):
    cfg = cfg_factory()
    out = train(cfg, results_root=tmp_path / "results", quiet=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", cfg.tracking.uri,
         "--default-artifact-root", (tmp_path / "mlartifacts").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:  # bounded wait for the server to answer
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start in 90 s"
                time.sleep(1)
        experiment = _call(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=sartm")
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = _call(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})
        (run,) = runs["runs"]
        assert run["info"]["run_name"] == "pst900/no-language"
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["test_miou"] == pytest.approx(out["final"]["test_miou"])
        assert metrics["train_loss"] == pytest.approx(out["final"]["train_loss"])
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["dataset"] == "synth-pst900" and tags["synthetic"] == "true"
        history = _call(
            base,
            f"/api/2.0/mlflow/metrics/get-history?run_id={run['info']['run_id']}&metric_key=test_miou",
        )
        assert sorted(m["step"] for m in history["metrics"]) == [1, 2]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
