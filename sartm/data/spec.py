"""What each dataset is: class names in label-index order, palettes, splits (docs/method.md section 1).

The synthetic stand-ins (`synth-<name>`) share the spec of the dataset they imitate, so every
downstream step (text cache, tables, palettes) treats them alike; `custom-<name>` datasets get
their spec from the user's class file at prepare time (stored in meta.json).
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetSpec:
    name: str
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


MFNET = DatasetSpec(
    name="mfnet",
    classes=(
        "unlabeled",
        "car",
        "person",
        "bike",
        "curve",
        "car_stop",
        "guardrail",
        "color_cone",
        "bump",
    ),
    palette=(
        (0, 0, 0),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
        (0, 0, 192),
        (128, 128, 0),
        (64, 64, 128),
        (192, 128, 128),
        (192, 64, 0),
    ),
    splits=("train", "val", "test"),
    native_size=(640, 480),
)

# Label ids follow the dataset (1 extinguisher, 3 drill). The authors' code lists the names with
# extinguisher and drill swapped, which corrupts their text teacher; we keep the correct order.
PST900 = DatasetSpec(
    name="pst900",
    classes=("background", "fire_extinguisher", "backpack", "hand_drill", "survivor"),
    palette=((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)),
    splits=("train", "test"),
    native_size=(1280, 720),
)

FMB = DatasetSpec(
    name="fmb",
    classes=(
        "background",
        "road",
        "sidewalk",
        "building",
        "lamp",
        "sign",
        "vegetation",
        "sky",
        "person",
        "car",
        "truck",
        "bus",
        "motorcycle",
        "bicycle",
        "pole",
    ),
    palette=(
        (0, 0, 0),
        (228, 228, 179),
        (133, 57, 181),
        (177, 162, 67),
        (50, 178, 200),
        (199, 45, 132),
        (84, 172, 66),
        (79, 73, 179),
        (166, 99, 76),
        (253, 121, 66),
        (91, 165, 137),
        (152, 97, 155),
        (140, 153, 105),
        (158, 215, 222),
        (90, 113, 135),
    ),
    splits=("train", "test"),
    native_size=(800, 600),
)

REAL = {spec.name: spec for spec in (MFNET, PST900, FMB)}
SYNTHETIC_PREFIX = "synth-"


def spec_for(name: str) -> DatasetSpec:
    """The spec of a real dataset or of its synthetic stand-in (`synth-mfnet` -> MFNet's)."""
    base = name.removeprefix(SYNTHETIC_PREFIX)
    if base not in REAL:
        allowed = [*REAL, *(SYNTHETIC_PREFIX + n for n in REAL)]
        raise KeyError(
            f"unknown dataset {name!r}; known: {', '.join(allowed)} (custom data: see meta.json)"
        )
    return REAL[base]
