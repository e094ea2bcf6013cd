"""`sartm tracking ui` itself: it serves the training runs (read back through its REST API), listens
on 127.0.0.1 only, and SIGTERM to it stops every process of the MLflow server it started."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import urllib.error
import urllib.request

import psutil
import pytest
from engine_helpers import start_tracking_ui

from sartm.config import save_config
from sartm.engine.train import train


def _call(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _listening(procs: list[psutil.Process]) -> set[tuple[str, int]]:
    out = set()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            out |= {
                (c.laddr.ip, c.laddr.port)
                for c in proc.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
    return out


@pytest.mark.slow
def test_tracking_ui_serves_the_runs_on_loopback_and_stops_on_sigterm(cfg_factory, tmp_path):
    cfg = cfg_factory()
    out = train(cfg, results_root=tmp_path / "results", quiet=True)
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    ui, port = start_tracking_ui(config_file, tmp_path, tmp_path / "ui.log", timeout=90)
    base = f"http://127.0.0.1:{port}"
    sartm_ui, server = psutil.Process(ui.pid), []
    try:
        experiment = _call(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=sartm-ci")
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

        server = sartm_ui.children(recursive=True)
        listening = _listening(server)
        assert ("127.0.0.1", port) in listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening  # loopback only

        ui.send_signal(signal.SIGTERM)  # to `sartm tracking ui` alone, not its process group
        ui.wait(timeout=60)
        gone, alive = psutil.wait_procs(server, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:  # whatever is left of what this test started, by process (psutil checks the pid)
        for proc in [sartm_ui, *server]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
