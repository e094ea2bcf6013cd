"""The registry of built-in datasets (the paper's kind: MFNet, PST900, FMB), the one list of them.

Each dataset is one module here whose `ENTRY` (sartm.data.builtin.entry.Builtin) declares its
spec, mirrors, reader and optional synthetic stand-in; adding a dataset is one such module plus
its name in `MODULES`. The specs, `prepare`, `download`, the stand-ins, the params.yaml schema
and the Snakemake wildcards all derive from `BUILTIN`; `register` adds an entry at run time.
"""

from __future__ import annotations

import re

from sartm.data.builtin import fmb, mfnet, pst900
from sartm.data.builtin.entry import Builtin, DatasetSpec, Mirror, Remote, StandIn

__all__ = [
    "BUILTIN",
    "SYNTHETIC_PREFIX",
    "Builtin",
    "DatasetSpec",
    "Mirror",
    "Remote",
    "StandIn",
    "builtin",
    "names",
    "register",
    "stand_in_names",
    "stand_ins",
]

SYNTHETIC_PREFIX = "synth-"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a logical dataset, a run id's first part, a regex as is
MODULES = (mfnet, pst900, fmb)  # in the order of the paper's tables
BUILTIN: dict[str, Builtin] = {}


def register(entry: Builtin) -> None:
    """Add a built-in dataset (the modules' entries at import; a test's or a plugin's later)."""
    name = entry.name
    if not NAME.match(name) or name in BUILTIN:
        why = "is already registered" if name in BUILTIN else "must match [a-z][a-z0-9_]*"
        raise ValueError(f"built-in dataset {name!r}: the name {why}")
    if entry.stand_in is not None:
        taken = {b.stand_in.code: n for n, b in stand_ins().items()}
        if entry.stand_in.code in taken:
            raise ValueError(
                f"built-in dataset {name!r}: stand-in code {entry.stand_in.code} is "
                f"{taken[entry.stand_in.code]}'s; give it an unused one (it seeds every sample)"
            )
    BUILTIN[name] = entry


def names() -> tuple[str, ...]:
    return tuple(BUILTIN)


def builtin(name: str) -> Builtin:
    """The entry of `name`; KeyError (one line, listing the known ones) for any other name."""
    if name not in BUILTIN:
        raise KeyError(f"unknown built-in dataset {name!r}; known: {', '.join(BUILTIN)}")
    return BUILTIN[name]


def stand_ins() -> dict[str, Builtin]:
    """synth-<name> -> entry, for every built-in dataset that has a synthetic stand-in."""
    return {SYNTHETIC_PREFIX + n: b for n, b in BUILTIN.items() if b.stand_in is not None}


def stand_in_names() -> tuple[str, ...]:
    return tuple(stand_ins())


for _module in MODULES:
    register(_module.ENTRY)
