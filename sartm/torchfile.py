"""Reading `torch.save` files safely, with one clear line for each way it can fail.

Every checkpoint, export and cache the project reads goes through `load`: always
`weights_only=True` (tensors and plain containers only: a pickled object is refused, never run),
and torch's own advice to retry with `weights_only=False` is not passed on to the user.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# torch names the refused global in two spellings ("Unsupported global: GLOBAL eval", "unsupported
# GLOBAL posix.system whose module posix is blocked")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load(
    path: str | Path, error: type[Exception], what: str = "PyTorch file", **kwargs: Any
) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; failures raise `error` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise error(
                f"{path}: holds pickled Python objects ({found.group(1)}), not only tensors; "
                f"refusing to load it as a {what} (nothing in it was run). Use a file you made "
                "with this project or downloaded from its official source."
            ) from exc
        raise error(
            f"{path}: not a readable {what}, truncated or corrupt? (unpickling failed)"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path}: not a readable {what}, truncated or corrupt? ({reason})") from exc


def non_finite(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or infinite values."""
    return [
        name
        for name, value in tensors.items()
        if isinstance(value, Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def refuse_non_finite(tensors: Mapping[str, Any], path: str | Path, error: type[Exception]) -> None:
    """Weights with NaN or infinities would load and predict garbage: refuse them by name."""
    bad = non_finite(tensors)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise error(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values "
            f"({', '.join(bad[:5])}{more}); the file is damaged or the run diverged"
        )
