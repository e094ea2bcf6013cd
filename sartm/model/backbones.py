"""The SAM2 image-encoder sizes, read from the `sam2` package's own configs so they cannot drift.

Every real size (SAM 2 and SAM 2.1; tiny, small, base-plus, large) takes its trunk and neck
hyper-parameters from `sam2/configs/<family>/<name>.yaml` (`model.image_encoder`), filled with
`Hiera`'s own defaults where the YAML leaves them out (base-plus does). Two tiny test-only sizes
(`test_hiera_micro` for CPU tests, `test_hiera_tiny` for the offline demo) follow the same layout
with a smaller width and `d_model`; they have no checkpoint.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import sam2
from omegaconf import OmegaConf
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine

from sartm.errors import SartmError

SAM2_CONFIGS = Path(sam2.__file__).resolve().parent / "configs"
EXPECTED_TARGETS = {
    "image_encoder": "sam2.modeling.backbones.image_encoder.ImageEncoder",
    "trunk": "sam2.modeling.backbones.hieradet.Hiera",
    "neck": "sam2.modeling.backbones.image_encoder.FpnNeck",
    "position_encoding": "sam2.modeling.position_encoding.PositionEmbeddingSine",
}


class BackboneError(SartmError, ValueError):
    """An unknown backbone name, or a packaged sam2 config that no longer has the expected shape."""


@dataclass(frozen=True)
class BackboneSpec:
    """One image-encoder size: where its hyper-parameters come from."""

    name: str
    family: str  # sam2 | sam2.1 | test
    size: str  # t | s | b+ | l | micro | tiny
    config: str | None  # the packaged sam2 config (relative to sam2/), None for test sizes


def _real(family: str, size: str) -> BackboneSpec:
    name = f"{family}_hiera_{size}"
    return BackboneSpec(name, family, size, f"configs/{family}/{name}.yaml")


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        *(_real("sam2", s) for s in ("t", "s", "b+", "l")),
        *(_real("sam2.1", s) for s in ("t", "s", "b+", "l")),
        BackboneSpec("test_hiera_micro", "test", "micro", None),
        BackboneSpec("test_hiera_tiny", "test", "tiny", None),
    ]
}

# Test-only sizes: same structure as the real ones (4 stages, q-pooling at every stage change,
# global attention inside stage 3 (never on a pooling block: Hiera cannot pool a global block),
# scalp 1, nearest top-down FPN on the two low-resolution levels), narrow enough for CPU tests.
_TEST_ENCODERS: dict[str, dict[str, Any]] = {
    "test_hiera_micro": {
        "scalp": 1,
        "trunk": {
            "embed_dim": 16,
            "num_heads": 1,
            "stages": [1, 1, 2, 1],
            "global_att_blocks": [3],
            "window_spec": [8, 4, 4, 2],
            "window_pos_embed_bkg_spatial_size": [4, 4],
        },
        "neck": {
            "d_model": 32,
            "backbone_channel_list": [128, 64, 32, 16],
            "fpn_top_down_levels": [2, 3],
            "fpn_interp_model": "nearest",
        },
        "position_encoding": {"num_pos_feats": 32, "normalize": True, "scale": None},
    },
    "test_hiera_tiny": {
        "scalp": 1,
        "trunk": {
            "embed_dim": 32,
            "num_heads": 1,
            "stages": [1, 1, 2, 1],
            "global_att_blocks": [3],
            "window_spec": [8, 4, 4, 2],
            "window_pos_embed_bkg_spatial_size": [7, 7],
        },
        "neck": {
            "d_model": 64,
            "backbone_channel_list": [256, 128, 64, 32],
            "fpn_top_down_levels": [2, 3],
            "fpn_interp_model": "nearest",
        },
        "position_encoding": {"num_pos_feats": 64, "normalize": True, "scale": None},
    },
}


def spec_of(backbone: str) -> BackboneSpec:
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}"
        ) from None


def _defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _strip_target(node: dict[str, Any], part: str, source: str) -> dict[str, Any]:
    target = node.pop("_target_", None)
    if target != EXPECTED_TARGETS[part]:
        raise BackboneError(
            f"{source}: {part} is {target!r}, expected {EXPECTED_TARGETS[part]!r} "
            "(the installed sam2 changed its config layout)"
        )
    return node


@cache
def _encoder_params(backbone: str) -> dict[str, Any]:
    spec = spec_of(backbone)
    if spec.config is None:
        raw = copy.deepcopy(_TEST_ENCODERS[backbone])
    else:
        path = Path(sam2.__file__).resolve().parent / spec.config
        if not path.is_file():
            raise BackboneError(f"{path}: packaged sam2 config for {backbone} not found")
        node = OmegaConf.load(path).model.image_encoder
        raw = OmegaConf.to_container(node, resolve=True)
        source = str(path)
        _strip_target(raw, "image_encoder", source)
        _strip_target(raw["trunk"], "trunk", source)
        _strip_target(raw["neck"], "neck", source)
        raw["position_encoding"] = _strip_target(
            raw["neck"].pop("position_encoding"), "position_encoding", source
        )
    # Fill in the library defaults so every hyper-parameter is explicit (base-plus omits most).
    trunk = {k: _plain(v) for k, v in _defaults(Hiera).items() if k != "weights_path"}
    trunk.update(raw["trunk"])
    neck = {k: _plain(v) for k, v in _defaults(FpnNeck).items()}
    neck.update(raw["neck"])
    pos = {k: _plain(v) for k, v in _defaults(PositionEmbeddingSine).items()}
    pos.update(raw["position_encoding"])
    # The warm-up fills a CUDA cache at construction (for compiling sam2's video predictor): it
    # would open a CUDA context on the default GPU in every process that builds a model.
    pos["warmup_cache"] = False
    return {
        "scalp": int(raw.get("scalp", 0)),
        "trunk": trunk,
        "neck": neck,
        "position_encoding": pos,
    }


def encoder_params(backbone: str) -> dict[str, Any]:
    """Every hyper-parameter of the image encoder: {"scalp", "trunk", "neck", "position_encoding"}."""
    return copy.deepcopy(_encoder_params(backbone))


def build_image_encoder(backbone: str) -> ImageEncoder:
    """sam2's own `ImageEncoder` (Hiera trunk + FPN neck) for this size, random weights."""
    params = encoder_params(backbone)
    trunk = Hiera(**params["trunk"])
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(**params["position_encoding"]), **params["neck"]
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=params["scalp"])


@dataclass(frozen=True)
class Architecture:
    """The hyper-parameters that shape the weights (what a checkpoint can tell apart).

    Heads and which blocks use global attention carry no parameters, so they are not here.
    """

    embed_dim: int
    stages: tuple[int, ...]
    pos_embed_size: tuple[int, int]
    first_window: int
    d_model: int

    def describe(self) -> str:
        return (
            f"embed_dim {self.embed_dim}, stages {'-'.join(map(str, self.stages))}, "
            f"d_model {self.d_model}"
        )


def architecture(backbone: str) -> Architecture:
    p = _encoder_params(backbone)
    trunk = p["trunk"]
    return Architecture(
        embed_dim=int(trunk["embed_dim"]),
        stages=tuple(int(s) for s in trunk["stages"]),
        pos_embed_size=tuple(int(s) for s in trunk["window_pos_embed_bkg_spatial_size"]),
        first_window=int(trunk["window_spec"][0]),
        d_model=int(p["neck"]["d_model"]),
    )


def size_multiple(backbone: str) -> int:
    """Input sides must be a multiple of this: 32 (four stride-2 stages after the stride-4 patch
    embedding, top-down FPN) and 4 x the first window (the tiled window position embedding)."""
    return math.lcm(32, 4 * architecture(backbone).first_window)
