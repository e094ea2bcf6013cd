"""The orchestrators' own overhead: how long Snakemake and DVC take to decide what to run.

Both are run in the project folder with the same Python as the benchmark; a missing Snakefile or
dvc.yaml is skipped with a note, and a failing command is reported with its exit status and the
end of its output rather than stopping the benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TIMEOUT_S = 600
COMMANDS = (
    ("snakemake -n all_tables", "Snakefile", ("snakemake", "-n", "all_tables")),
    ("dvc status", "dvc.yaml", ("dvc", "status")),
)


def time_command(args: list[str], *, cwd: Path, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Wall time and exit status of one command (output kept only when it failed)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_s": time.perf_counter() - started, "returncode": None, "error": "timed out"}
    result: dict[str, Any] = {
        "wall_s": time.perf_counter() - started,
        "returncode": done.returncode,
    }
    if done.returncode != 0:
        result["error"] = (done.stderr or done.stdout).strip()[-600:]
    return result


def measure_pipeline(root: Path) -> dict[str, dict[str, Any]]:
    """{command: {wall_s, returncode[, error]} or {skipped: why}} for the project at `root`."""
    out: dict[str, dict[str, Any]] = {}
    for label, needed, args in COMMANDS:
        if not (root / needed).is_file():
            out[label] = {"skipped": f"no {needed} in {root}"}
            continue
        out[label] = time_command([sys.executable, "-m", *args], cwd=root)
    return out
