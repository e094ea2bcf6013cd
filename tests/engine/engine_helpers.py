"""Helpers the engine tests import by name (a module of its own: `from conftest import ...` picks
whichever conftest was loaded last when tests/engine and tests/model are collected together)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import sartm


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
