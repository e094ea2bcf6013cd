"""The project's own checkpoint files: training checkpoints (`last.pt`, `best.pt`) and exports.

Not the SAM2 base weights a run starts from (`sartm.model.sam2_weights`). A training checkpoint
holds what resuming needs (trainable state, optimiser, step, history, every rank's RNG states)
and the configuration identity that decides whether a run may resume from it or evaluate it; an
export (`sartm export`) holds the whole merged model. Building a model from either file is
`sartm.engine.modelio`.

A checkpoint is a plain dict of tensors and builtin types, so it loads with
`torch.load(..., weights_only=True)` (no pickled objects, nothing executed on load). It is written
to a temporary file in the same folder and renamed over the old one (`os.replace` is atomic on
POSIX), so a run killed at any moment leaves either the previous or the new checkpoint, never a
truncated one.

Test-only fault injection: with `SARTM_KILL_AT=<when>:<file name>:<epoch>` in the environment
(`when` is `before` or `after`), the process SIGKILLs itself just before or just after the rename
of that checkpoint of that epoch into place, e.g. `after:last.pt:2`. The resume tests use it to
kill at the exact instants around an epoch's commit (tests/engine/test_resume.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sartm import torchfile
from sartm.errors import SartmError

TRAIN_FORMAT = "sartm-train-checkpoint"  # the "format" entry of last.pt / best.pt
EXPORT_FORMAT = "sartm-export"  # ... and of an exported model file
TMP_PREFIX = ".tmp-"
KILL_ENV = "SARTM_KILL_AT"


class TrainingCheckpointError(SartmError, RuntimeError):
    """A training checkpoint that is unreadable, incomplete or does not fit the run."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file beside `path`, fsync, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _kill_point("before", path, obj)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _kill_point("after", path, obj)


def _kill_point(when: str, path: Path, obj: Any) -> None:
    """SIGKILL this process if `SARTM_KILL_AT` names this instant (see the module docstring)."""
    wanted = os.environ.get(KILL_ENV)
    if wanted and isinstance(obj, dict) and wanted == f"{when}:{path.name}:{obj.get('epoch')}":
        os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temp files left by a process killed while writing (they are never valid)."""
    folder = Path(folder)
    stale = sorted(folder.glob(f"{TMP_PREFIX}*")) if folder.is_dir() else []
    for item in stale:
        item.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only) onto the CPU; errors name the file."""
    path = Path(path)
    state = torchfile.load(path, TrainingCheckpointError, "sartm checkpoint")
    if not isinstance(state, dict):
        raise TrainingCheckpointError(f"{path}: expected a dict, found {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise TrainingCheckpointError(
            f"{path}: not a complete sartm checkpoint (missing {missing})"
        )
    return state


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The file's SHA-256 (hex), read in chunks: what metrics.json and MLflow record of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and builtins."""
    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {
            "version": version,
            "state": torch.tensor(mt, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed the generators `rng_state` saves (Python, NumPy, torch), for reproducible draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Sections that change how a model is evaluated, not what it learns: a checkpoint stays valid
# (for resuming and for evaluation) when only these differ.
EVALUATION_SECTIONS = ("eval",)


def learning_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """`Config.training_identity()` without the evaluation-only sections."""
    return {k: v for k, v in identity.items() if k not in EVALUATION_SECTIONS}


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, formatted `key: old -> new`."""
    out = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, prefix=f"{name}."))
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
