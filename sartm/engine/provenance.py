"""Where a number came from: code version, library versions, hardware, input data.

Written into metrics.json and MLflow tags so that a result can be traced without the run's logs.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch

from sartm import __version__
from sartm.config import PROJECT_ROOT
from sartm.engine.run_checkpoint import sha256_file

LIBRARIES = ("torch", "torchvision", "sam2", "open_clip_torch", "numpy", "mlflow")


@cache
def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """`{"git_commit": sha or None, "git_dirty": bool or None}` for the project checkout."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def provenance(device: torch.device) -> dict[str, Any]:
    """The provenance block of metrics.json."""
    return {
        "sartm": __version__,
        **library_versions(),
        "torch_cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "device": device_name(device),
        **git_state(),
    }


def manifest_hash(data_root: Path) -> str | None:
    """SHA-256 of the dataset's manifest.csv (which names every sample), or None when absent."""
    path = Path(data_root) / "manifest.csv"
    return sha256_file(path) if path.is_file() else None
