"""What one built-in dataset declares: its spec, where it is published, how its original layout
is read, and (optionally) how its synthetic stand-in is drawn. The registry is the package
(sartm.data.builtin); each dataset is one module there holding its `ENTRY`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sartm.data.common import IGNORE_INDEX

if TYPE_CHECKING:
    import numpy as np

    from sartm.data.drawing import Canvas
    from sartm.data.readers import Reader, SplitLayout


@dataclass(frozen=True)
class DatasetSpec:
    """Classes in label-index order, palette and splits (docs/method.md section 1)."""

    name: str
    title: str  # as printed: "MFNet"
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    splits: tuple[str, ...]
    native_size: tuple[int, int]  # (width, height) of the real images
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def text_prompts(self, template: str | None = None) -> list[str]:
        """Class names as CLIP reads them: underscores as spaces, optionally in a template."""
        names = [c.replace("_", " ") for c in self.classes]
        return [template.format(n) for n in names] if template else names


@dataclass(frozen=True)
class Remote:
    """One published file. kind: http (direct link), gdrive (a Drive file), gdrive-folder (a
    Drive folder: take `filename` from it, or every archive when filename is '*'), page (a
    landing page that only a person can use)."""

    filename: str
    url: str
    kind: str
    digest: str | None = None  # "<algorithm>:<hex>", only where the distributor publishes one


@dataclass(frozen=True)
class Mirror:
    name: str
    page: str  # where a person finds the link and the terms of use
    files: tuple[Remote, ...]
    note: str = ""


@dataclass(frozen=True)
class StandIn:
    """How the synthetic stand-in `synth-<name>` imitates the dataset (sartm.data.synth)."""

    code: int  # the RNG stream of its samples: changing it changes every byte
    aspect: tuple[int, int]  # (width, height) ratio of the real images
    splits: tuple[str, ...]
    scene: Callable[[Canvas, int, dict[str, int]], str]  # draws, returns the condition
    day_night_ids: bool = False  # ids end in D / N, and `subset` records day / night
    # after the sensor model, with the sample's generator: changes the thermal image in place
    thermal_effects: Callable[[np.random.Generator, np.ndarray], None] | None = None


@dataclass(frozen=True)
class Builtin:
    """One dataset of the paper's kind, declared once."""

    spec: DatasetSpec
    mirrors: tuple[Mirror, ...]  # first = default; empty: get the archives by hand
    reader: SplitLayout | Reader
    stand_in: StandIn | None = None

    @property
    def name(self) -> str:
        return self.spec.name
