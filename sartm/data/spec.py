"""A dataset's spec by name: class names in label-index order, palette, splits (docs/method.md
section 1). The specs are declared in the registry, sartm.data.builtin.

The synthetic stand-ins (`synth-<name>`) share the spec of the dataset they imitate, so every
downstream step (text cache, tables, palettes) treats them alike; `custom-<name>` datasets get
their spec from the user's class file at prepare time (stored in meta.json).
"""

from __future__ import annotations

from sartm.data import builtin
from sartm.data.builtin import SYNTHETIC_PREFIX, DatasetSpec
from sartm.data.common import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "SYNTHETIC_PREFIX", "DatasetSpec", "spec_names", "spec_for"]


def spec_names() -> tuple[str, ...]:
    """Every name `spec_for` knows: the built-in datasets, then their stand-ins."""
    return (*builtin.names(), *builtin.stand_in_names())


def spec_for(name: str) -> DatasetSpec:
    """The spec of a built-in dataset or of its synthetic stand-in (`synth-mfnet` -> MFNet's)."""
    entry = builtin.stand_ins().get(name) or builtin.BUILTIN.get(name)
    if entry is None:
        raise KeyError(
            f"unknown dataset {name!r}; known: {', '.join(spec_names())} "
            f"(custom data: see meta.json)"
        )
    return entry.spec
