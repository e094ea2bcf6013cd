"""Synthetic RGB-thermal stand-ins for MFNet, PST900 and FMB (`sartm data synth`).

The real datasets cannot be downloaded everywhere, so the pipeline also runs on procedurally
drawn scenes that keep what the method depends on: the real class names and label ids, the real
split structure and aspect ratio, and scenes in which BOTH modalities matter. Warm things (people,
engines, tyres, drill motors) are bright in thermal; cold things (cones, signs, bumps, backpacks,
extinguishers) show in RGB by colour and shape but barely in thermal; night, fog, darkness and
glare make RGB nearly useless, so only thermal finds the warm classes there. Backgrounds are
textured (smooth noise, stripes, windows, thermal fixed-pattern noise), warm and coloured
distractors are labelled background, and objects overlap (the label is the front object).

Determinism: each sample is drawn from `numpy.random.default_rng([seed, dataset, split, index])`,
so the same seed gives byte-identical files and a sample does not depend on how many others are
generated. PST900 and FMB have no validation split, so `samples["val"]` is ignored for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sartm.data.common import META_NAME, LayoutWriter, load_meta, written_by_sartm
from sartm.data.spec import spec_for
from sartm.errors import SartmError

GENERATOR_VERSION = 1
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
# Scenes for pretraining the SAM2 stand-in (sartm.pretrain): a seed stream of their own, so they
# share no image with any split of a stand-in; never written as a dataset split.
PRETRAIN_SPLIT = "pretrain"
DATASET_CODES = {"synth-mfnet": 11, "synth-pst900": 12, "synth-fmb": 13}
SYNTH_NAMES = tuple(DATASET_CODES)


class SynthError(SartmError, ValueError):
    """A synthetic dataset that cannot be made as asked (unknown name, bad size or count)."""


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1] (a `cells`-wide grid upsampled bicubically): texture."""
    gh = max(2, round(cells * h / w))
    grid = rng.random((gh, cells), dtype=np.float32)
    field = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC))
    return np.clip(field, 0.0, 1.0)


def _box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


class Canvas:
    """One scene being drawn: daylight RGB albedo and apparent temperature (float), labels."""

    def __init__(self, rng: np.random.Generator, w: int, h: int) -> None:
        self.rng, self.w, self.h = rng, w, h
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.thermal = np.zeros((h, w), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.owner = np.zeros((h, w), np.int32)  # which paint() call is visible at each pixel
        self.emitters: list[tuple[int, tuple[float, float, float]]] = []

    def mask(self, shapes: list[tuple]) -> np.ndarray:
        """Union of PIL shapes: ("rect"|"ellipse", box), ("poly", points), ("line", pts, width)."""
        im = Image.new("L", (self.w, self.h), 0)
        draw = ImageDraw.Draw(im)
        for kind, *args in shapes:
            if kind == "rect":
                draw.rectangle(_box(args[0]), fill=255)
            elif kind == "ellipse":
                draw.ellipse(_box(args[0]), fill=255)
            elif kind == "ring":
                draw.ellipse(_box(args[0]), outline=255, width=max(1, round(args[1])))
            elif kind == "poly":
                draw.polygon([(float(x), float(y)) for x, y in args[0]], fill=255)
            elif kind == "line":
                pts = [(float(x), float(y)) for x, y in args[0]]
                draw.line(pts, fill=255, width=max(1, round(args[1])))
            else:
                raise ValueError(f"unknown shape {kind!r}")
        return np.asarray(im) > 0

    def paint(
        self,
        shapes: list[tuple],
        *,
        cls: int | None,
        colour: tuple[float, float, float],
        temp: float,
        texture: float = 6.0,
        temp_noise: float = 3.0,
        shade: float = 0.16,
    ) -> np.ndarray:
        """Paint the union of `shapes` (top lit, bottom shaded); cls None keeps the labels below."""
        m = self.mask(shapes)
        ys = np.nonzero(m)[0]
        if ys.size == 0:
            return m
        rel = (ys - ys.min()) / max(1, int(np.ptp(ys)))
        col = np.asarray(colour, np.float32)
        light = (1.0 + shade / 2 - shade * rel).astype(np.float32)[:, None]
        self.rgb[m] = col * light + self.rng.normal(0, texture, (ys.size, 3)).astype(np.float32)
        self.thermal[m] = temp + self.rng.normal(0, temp_noise, ys.size).astype(np.float32)
        if cls is not None:
            self.label[m] = cls
        self.owner[m] = self.owner.max() + 1
        return m

    def emit(self, mask: np.ndarray, colour: tuple[float, float, float]) -> None:
        """Make the last painted shape a light source: bright in any lighting where still visible
        (lamps, car lights, lit windows)."""
        if mask.any():
            self.emitters.append((int(self.owner[mask].max()), colour))

    def glow(self, cx: float, cy: float, sigma: float) -> np.ndarray:
        yy, xx = np.mgrid[0 : self.h, 0 : self.w].astype(np.float32)
        return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def _colour(rng: np.random.Generator, choices: list[tuple[int, int, int]], jitter: float = 12):
    base = np.asarray(choices[int(rng.integers(len(choices)))], np.float32)
    return tuple(np.clip(base + rng.normal(0, jitter, 3), 0, 255).tolist())


CLOTHES = [
    (30, 30, 35),
    (60, 60, 70),
    (150, 30, 30),
    (30, 60, 140),
    (200, 200, 200),
    (90, 110, 60),
    (210, 180, 60),
    (110, 70, 40),
    (230, 120, 150),
]
PAINT = [
    (200, 30, 30),
    (230, 230, 230),
    (160, 160, 170),
    (25, 25, 30),
    (30, 60, 150),
    (40, 100, 60),
    (200, 160, 40),
]
SKIN = [(230, 190, 160), (190, 140, 110), (120, 80, 60)]


# --------------------------------------------------------------------------------------------
# Things (each paints its parts with one class id; `p` is the perspective scale, 1 = nearest)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    """Ambient temperatures of the scene and the unit of size (pixels of 1 m at the bottom row)."""

    ground: float
    air: float
    unit: float


def person(
    c: Canvas, cls: int, x: float, y: float, s: float, env: Env, lying: bool = False
) -> None:
    """Head, torso, legs; 60-110 grey levels hotter than the ground (skin hottest)."""
    rng, u = c.rng, env.unit * s
    hgt, wid = 1.7 * u, 0.45 * u
    warm = env.ground + rng.uniform(70, 95)
    cloth, trousers = _colour(rng, CLOTHES), _colour(rng, CLOTHES)
    skin = _colour(rng, SKIN, 8)
    if lying:  # a survivor on the floor: the same parts, horizontal
        c.paint(
            [("rect", (x - 0.75 * hgt / 2, y - wid * 0.9, x + 0.1 * hgt, y))],
            cls=cls,
            colour=trousers,
            temp=warm - 8,
        )
        c.paint([("rect", (x, y - wid, x + 0.45 * hgt / 1.2, y))], cls=cls, colour=cloth, temp=warm)
        r = 0.13 * hgt
        c.paint(
            [("ellipse", (x + 0.38 * hgt, y - 2 * r, x + 0.38 * hgt + 2 * r, y))],
            cls=cls,
            colour=skin,
            temp=warm + 15,
        )
        return
    legs = [
        ("rect", (x - wid * 0.45, y - 0.48 * hgt, x - wid * 0.05, y)),
        ("rect", (x + wid * 0.05, y - 0.48 * hgt, x + wid * 0.45, y)),
    ]
    c.paint(legs, cls=cls, colour=trousers, temp=warm - 8)
    arms = ("line", [(x - wid * 0.55, y - 0.82 * hgt), (x - wid * 0.7, y - 0.45 * hgt)], 0.08 * u)
    c.paint(
        [("rect", (x - wid / 2, y - 0.84 * hgt, x + wid / 2, y - 0.46 * hgt)), arms],
        cls=cls,
        colour=cloth,
        temp=warm,
    )
    r = 0.1 * hgt
    c.paint(
        [("ellipse", (x - r, y - hgt, x + r, y - hgt + 2 * r))],
        cls=cls,
        colour=skin,
        temp=warm + 15,
    )


def _wheels(c: Canvas, cls: int, xs: list[float], y: float, r: float, temp: float) -> None:
    c.paint(
        [("ellipse", (xw - r, y - 2 * r, xw + r, y)) for xw in xs],
        cls=cls,
        colour=(20, 20, 22),
        temp=temp,
        texture=3,
    )


def car(c: Canvas, cls: int, x: float, y: float, s: float, env: Env) -> None:
    """Body, cabin with cold glass, hot engine end and tyres, tail lights (emitters at night)."""
    rng, u = c.rng, env.unit * s
    w, h = 1.8 * u, 1.45 * u
    front = 1 if rng.random() < 0.5 else -1
    body_t = env.ground + rng.uniform(5, 20)
    paint = _colour(rng, PAINT)
    c.paint(
        [
            ("rect", (x - w / 2, y - 0.62 * h, x + w / 2, y - 0.12 * h)),
            (
                "poly",
                [
                    (x - 0.35 * w, y - 0.62 * h),
                    (x - 0.25 * w, y - h),
                    (x + 0.25 * w, y - h),
                    (x + 0.35 * w, y - 0.62 * h),
                ],
            ),
        ],
        cls=cls,
        colour=paint,
        temp=body_t,
    )
    c.paint(
        [
            (
                "poly",
                [
                    (x - 0.3 * w, y - 0.64 * h),
                    (x - 0.22 * w, y - 0.94 * h),
                    (x + 0.22 * w, y - 0.94 * h),
                    (x + 0.3 * w, y - 0.64 * h),
                ],
            )
        ],
        cls=cls,
        colour=(60, 75, 95),
        temp=env.air + 15,
        texture=4,
    )
    engine = (x + front * 0.15 * w, y - 0.5 * h, x + front * 0.5 * w, y - 0.12 * h)
    c.paint([("rect", engine)], cls=cls, colour=paint, temp=env.ground + rng.uniform(60, 90))
    _wheels(c, cls, [x - 0.32 * w, x + 0.32 * w], y, 0.15 * h, env.ground + rng.uniform(40, 60))
    lights = c.paint(
        [
            ("rect", (x - 0.48 * w, y - 0.55 * h, x - 0.4 * w, y - 0.45 * h)),
            ("rect", (x + 0.4 * w, y - 0.55 * h, x + 0.48 * w, y - 0.45 * h)),
        ],
        cls=cls,
        colour=(200, 40, 40),
        temp=body_t,
    )
    c.emit(lights, (255, 70, 60))


def truck(c: Canvas, cls: int, x: float, y: float, s: float, env: Env) -> None:
    """Hot cab and tyres, a tall cargo box at air temperature."""
    rng, u = c.rng, env.unit * s
    w, h = 3.2 * u, 2.4 * u
    front = 1 if rng.random() < 0.5 else -1
    box = (x - w / 2, y - h, x + front * 0.2 * w, y - 0.15 * h)
    c.paint(
        [("rect", box)],
        cls=cls,
        colour=_colour(rng, [(220, 220, 215), (60, 90, 150), (170, 60, 40)]),
        temp=env.air + 10,
    )
    cab = (x + front * 0.22 * w, y - 0.7 * h, x + front * 0.5 * w, y - 0.15 * h)
    c.paint(
        [("rect", cab)], cls=cls, colour=_colour(rng, PAINT), temp=env.ground + rng.uniform(55, 80)
    )
    _wheels(c, cls, [x - 0.35 * w, x + 0.0, x + 0.35 * w], y, 0.12 * h, env.ground + 50)


def bus(c: Canvas, cls: int, x: float, y: float, s: float, env: Env) -> None:
    """Long body with a row of dark windows; hot rear engine, warm tyres."""
    rng, u = c.rng, env.unit * s
    w, h = 4.2 * u, 2.2 * u
    c.paint(
        [("rect", (x - w / 2, y - h, x + w / 2, y - 0.1 * h))],
        cls=cls,
        colour=_colour(rng, [(230, 200, 40), (40, 120, 200), (200, 40, 40), (240, 240, 240)]),
        temp=env.ground + rng.uniform(10, 20),
    )
    n = 6
    c.paint(
        [
            (
                "rect",
                (
                    x - w / 2 + (i + 0.15) * w / n,
                    y - 0.9 * h,
                    x - w / 2 + (i + 0.85) * w / n,
                    y - 0.55 * h,
                ),
            )
            for i in range(n)
        ],
        cls=cls,
        colour=(50, 60, 80),
        temp=env.air + 15,
        texture=4,
    )
    end = 1 if rng.random() < 0.5 else -1
    c.paint(
        [("rect", (x + end * 0.38 * w, y - 0.5 * h, x + end * 0.5 * w, y - 0.12 * h))],
        cls=cls,
        colour=(80, 80, 80),
        temp=env.ground + rng.uniform(65, 90),
    )
    _wheels(c, cls, [x - 0.33 * w, x + 0.33 * w], y, 0.13 * h, env.ground + 50)


def two_wheeler(c: Canvas, cls: int, x: float, y: float, s: float, env: Env, motor: bool) -> None:
    """Bicycle (thin frame, near ambient) or motorcycle (solid body with a hot engine)."""
    rng, u = c.rng, env.unit * s
    r = 0.33 * u
    d = 1.05 * u
    col = _colour(rng, PAINT)
    if motor:
        _wheels(c, cls, [x - d / 2, x + d / 2], y, r, env.ground + 45)
        c.paint(
            [
                (
                    "poly",
                    [
                        (x - d / 2, y - 1.6 * r),
                        (x - 0.1 * d, y - 2.6 * r),
                        (x + d / 2, y - 2.2 * r),
                        (x + 0.3 * d, y - r),
                    ],
                )
            ],
            cls=cls,
            colour=col,
            temp=env.ground + 25,
        )
        c.paint(
            [("rect", (x - 0.15 * d, y - 1.6 * r, x + 0.2 * d, y - 0.7 * r))],
            cls=cls,
            colour=(70, 70, 75),
            temp=env.ground + rng.uniform(70, 95),
        )
        return
    lw = max(1.0, 0.07 * u)
    wheels = [("ring", (xw - r, y - 2 * r, xw + r, y), lw) for xw in (x - d / 2, x + d / 2)]
    frame = (
        "line",
        [
            (x - d / 2, y - r),
            (x - 0.05 * d, y - 2.2 * r),
            (x + 0.3 * d, y - 2.3 * r),
            (x + d / 2, y - r),
            (x, y - r),
            (x - d / 2, y - r),
        ],
        lw,
    )
    bar = ("line", [(x + 0.3 * d, y - 2.3 * r), (x + 0.35 * d, y - 2.9 * r)], lw)
    c.paint(
        [*wheels, frame, bar], cls=cls, colour=col, temp=env.ground + rng.uniform(8, 18), texture=4
    )


def cone(c: Canvas, cls: int, x: float, y: float, s: float, env: Env) -> None:
    """Orange cone with a white band: vivid in RGB, a few levels colder than the road."""
    u = env.unit * s
    h, w = 0.7 * u, 0.42 * u
    c.paint(
        [("poly", [(x - w / 2, y), (x, y - h), (x + w / 2, y)])],
        cls=cls,
        colour=(245, 110, 25),
        temp=env.ground - 8,
    )
    c.paint(
        [
            (
                "poly",
                [
                    (x - 0.3 * w, y - 0.4 * h),
                    (x - 0.17 * w, y - 0.65 * h),
                    (x + 0.17 * w, y - 0.65 * h),
                    (x + 0.3 * w, y - 0.4 * h),
                ],
            )
        ],
        cls=cls,
        colour=(240, 240, 240),
        temp=env.ground - 8,
    )


def pole(c: Canvas, cls: int, x: float, y: float, s: float, env: Env, height: float = 4.0) -> float:
    """A thin grey pole, slightly colder than the air; returns the top y."""
    u = env.unit * s
    top = y - height * u
    c.paint(
        [("rect", (x - max(0.6, 0.06 * u), top, x + max(0.6, 0.06 * u), y))],
        cls=cls,
        colour=_colour(c.rng, [(120, 120, 125), (90, 95, 90)]),
        temp=env.air - 5,
        texture=4,
    )
    return top


# --------------------------------------------------------------------------------------------
# Lighting and sensors
# --------------------------------------------------------------------------------------------


def finish(c: Canvas, condition: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the condition to RGB (day, night, dark, fog, glare) and the thermal sensor model."""
    rng, h, w = c.rng, c.h, c.w
    rgb = c.rgb.copy()
    if condition in ("night", "dark"):
        dim = rng.uniform(0.06, 0.14)
        if condition == "dark":  # a robot's headlamp: one dim spot in a dark tunnel
            spot = c.glow(rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.8) * h, 0.22 * w)
            light = dim + 0.35 * spot
        else:
            light = np.full((h, w), dim, np.float32)
        rgb *= light[..., None]
        for owner, colour in c.emitters:
            mask = c.owner == owner
            if mask.any():
                rgb[mask] = colour
                cy, cx = np.argwhere(mask).mean(0)
                rgb += (0.5 * c.glow(cx, cy, 0.05 * w))[..., None] * np.asarray(colour, np.float32)
        noise = 7.0
    elif condition == "fog":
        depth = np.linspace(1.0, 0.55, h, dtype=np.float32)[:, None, None]  # far = higher up
        f = rng.uniform(0.6, 0.8) * depth
        rgb = rgb * (1 - f) + 200 * f
        noise = 4.0
    else:
        rgb *= rng.uniform(0.85, 1.15)
        noise = 3.0
    if condition == "glare":  # sun or oncoming headlights: a large saturated blob
        g = c.glow(rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.6) * h, rng.uniform(0.2, 0.3) * w)
        rgb += (rng.uniform(250, 350) * g)[..., None]
    rgb += rng.normal(0, noise, rgb.shape).astype(np.float32)
    rgb_u8 = np.clip(rgb, 0, 255).astype(np.uint8)

    th = np.clip(c.thermal, 0, 255).astype(np.uint8)
    th = np.asarray(Image.fromarray(th).filter(ImageFilter.GaussianBlur(0.7)), np.float32)
    th += rng.normal(0, 1.5, (1, w)).astype(np.float32)  # column fixed-pattern noise (stripes)
    th += rng.normal(0, 2.0, (h, w)).astype(np.float32)
    th = th * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)  # per-image automatic gain
    return rgb_u8, np.clip(th, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


@dataclass
class Road:
    """A straight road to a vanishing point: edge x at any y, and perspective scale."""

    horizon: float
    vx: float
    left: float  # x of the left edge at the bottom row
    right: float
    h: int

    def p(self, y: float) -> float:
        return float(np.clip((y - self.horizon) / (self.h - self.horizon), 0.08, 1.0))

    def edge(self, side: int, y: float) -> float:
        t = (y - self.horizon) / (self.h - self.horizon)
        return self.vx + t * ((self.left if side < 0 else self.right) - self.vx)


def _street(c: Canvas, env: Env, night: bool, labels: dict[str, int]) -> Road:
    """Sky, buildings, vegetation, road, kerbside ground: labelled when `labels` names them."""
    rng, w, h = c.rng, c.w, c.h
    horizon = rng.uniform(0.33, 0.45) * h
    sky = (25, 30, 45) if night else _colour(rng, [(120, 165, 215), (170, 190, 210)], 8)
    c.paint(
        [("rect", (0, 0, w, horizon))],
        cls=labels.get("sky", 0),
        colour=sky,
        temp=env.air - 50,
        texture=3,
        shade=-0.3,
    )
    x = -rng.uniform(0, 0.1) * w
    while x < w:  # buildings along the horizon, with a grid of windows
        bw = rng.uniform(0.12, 0.3) * w
        top = rng.uniform(0.02, 0.75) * horizon
        wall = _colour(rng, [(150, 140, 130), (110, 100, 95), (180, 170, 150), (90, 90, 100)])
        bld = labels.get("building", 0)
        if rng.random() < 0.85:
            c.paint(
                [("rect", (x, top, x + bw, horizon + 1))],
                cls=bld,
                colour=wall,
                temp=env.air + rng.uniform(5, 25),
            )
            step = max(3.0, 0.035 * w)
            for wy in np.arange(top + step / 2, horizon - step / 2, step):
                lit = night and rng.random() < 0.3
                m = c.paint(
                    [
                        ("rect", (xx, wy, xx + step / 2, wy + step / 2))
                        for xx in np.arange(x + step / 3, x + bw - step / 2, step)
                    ],
                    cls=bld,
                    colour=(70, 80, 95),
                    temp=env.air + 10,
                    texture=4,
                )
                if lit:
                    c.emit(m, (230, 200, 120))
        x += bw + rng.uniform(0, 0.05) * w
    road = Road(
        horizon=horizon,
        vx=rng.uniform(0.35, 0.65) * w,
        left=rng.uniform(-0.4, 0.15) * w,
        right=rng.uniform(0.85, 1.4) * w,
        h=h,
    )
    c.paint(
        [("rect", (0, horizon, w, h))],
        cls=0,
        colour=(95, 100, 80),
        temp=env.ground - 10,
        texture=10,
    )
    c.rgb[int(horizon) :] += (30 * smooth_noise(rng, h - int(horizon), w, 8) - 15)[..., None]
    if "vegetation" in labels:
        for _ in range(int(rng.integers(1, 4))):
            tx = rng.uniform(0, w)
            crown = [
                ("ellipse", (tx + dx - r, horizon - r * 1.8 + dy, tx + dx + r, horizon + dy))
                for dx, dy, r in rng.uniform([-8, -8, 4], [8, 4, 12], (4, 3)) * w / 160
            ]
            c.paint(
                crown,
                cls=labels["vegetation"],
                colour=_colour(rng, [(60, 110, 50), (40, 80, 40)]),
                temp=env.air + 5,
                texture=18,
            )
    if "sidewalk" in labels:
        for side in (-1, 1):
            xb, xo = road.edge(side, h), road.edge(side, h) + side * rng.uniform(0.2, 0.35) * w
            c.paint(
                [("poly", [(road.vx, horizon), (xb, h), (xo, h)])],
                cls=labels["sidewalk"],
                colour=(170, 150, 150),
                temp=env.ground - 5,
                texture=8,
            )
    poly = [(road.vx - 1, horizon), (road.vx + 1, horizon), (road.right, h), (road.left, h)]
    c.paint(
        [("poly", poly)], cls=labels.get("road", 0), colour=(85, 85, 90), temp=env.ground, texture=7
    )
    dashes = []
    for t0 in np.arange(0.05, 1.0, 0.16):  # centre-line dashes, longer when near
        y0, y1 = horizon + t0 * (h - horizon), horizon + (t0 + 0.07) * (h - horizon)
        xm0, xm1 = (
            (road.edge(-1, y0) + road.edge(1, y0)) / 2,
            (road.edge(-1, y1) + road.edge(1, y1)) / 2,
        )
        dashes.append(("line", [(xm0, y0), (xm1, y1)], max(1, 0.012 * w * road.p(y1))))
    c.paint(dashes, cls=labels.get("road", 0), colour=(225, 225, 215), temp=env.ground + 3)
    return road


def _place(c: Canvas, road: Road, *, on_road: bool = True) -> tuple[float, float]:
    """A ground point below the horizon: on the road, or on the kerbside when not `on_road`."""
    rng = c.rng
    y = road.horizon + rng.uniform(0.12, 1.0) ** 0.7 * (c.h - road.horizon)
    lx, rx = road.edge(-1, y), road.edge(1, y)
    if on_road:
        x = rng.uniform(max(lx, 0), min(rx, c.w))
    elif rng.random() < 0.5:
        x = lx - rng.uniform(0.02, 0.12) * c.w
    else:
        x = rx + rng.uniform(0.02, 0.12) * c.w
    return float(np.clip(x, 2, c.w - 2)), float(y)


def _distractors(c: Canvas, road: Road, env: Env, n: int) -> None:
    """Background things that look like a class in one modality only (labelled 0)."""
    rng = c.rng
    for _ in range(n):
        x, y = _place(c, road, on_road=rng.random() < 0.6)
        r = env.unit * road.p(y) * rng.uniform(0.2, 0.5)
        if rng.random() < 0.5:  # hot manhole / exhaust steam: warm, dull in RGB
            c.paint(
                [("ellipse", (x - 2 * r, y - r, x + 2 * r, y))],
                cls=0,
                colour=(70, 70, 72),
                temp=env.ground + rng.uniform(40, 70),
                temp_noise=6,
            )
        else:  # an orange or red board: cone-coloured, cold
            c.paint(
                [("rect", (x - r, y - 3 * r, x + r, y - r))],
                cls=0,
                colour=_colour(rng, [(240, 110, 30), (200, 40, 40)]),
                temp=env.air,
            )


@dataclass
class Job:
    """One thing to draw: far things (small depth) first; `cls` is checked for visibility."""

    depth: float
    cls: int
    draw: Callable[[], None]


def _draw_all(c: Canvas, jobs: list[Job], required: set[int]) -> None:
    """Draw far to near (near occludes far: the label is the front object), then redraw in
    front any required thing that ended up completely hidden, so class coverage is guaranteed."""
    for job in sorted(jobs, key=lambda j: j.depth):
        job.draw()
    present = set(np.unique(c.label).tolist())
    for job in jobs:
        if job.cls in required and job.cls not in present:
            job.draw()
            present.add(job.cls)


def _required(pool: list[str], index: int, k: int) -> list[str]:
    """Classes this sample must show: rotating through the pool covers every class quickly."""
    return [pool[(index * k + j) % len(pool)] for j in range(k)]


def _mfnet(c: Canvas, index: int, cls: dict[str, int]) -> str:
    """A road seen from a car: 4:3, half the samples at night (ids end in D or N)."""
    rng, w, h = c.rng, c.w, c.h
    night = index % 2 == 1  # alternate, so every split has both halves
    condition = "night" if night else ("glare" if rng.random() < 0.25 else "day")
    env = Env(
        ground=rng.uniform(85, 100) if night else rng.uniform(120, 140),
        air=rng.uniform(70, 85) if night else rng.uniform(100, 120),
        unit=0.16 * w,
    )
    road = _street(c, env, night, {})
    _distractors(c, road, env, int(rng.integers(0, 3)))
    pool = ["car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump"]
    required = _required(pool, index, 3)
    wanted = required + [n for n in pool if n not in required and rng.random() < 0.35]
    sides = [-1, 1] if rng.random() < 0.5 else [1, -1]
    y0 = road.horizon + 2
    jobs: list[Job] = []
    for name in wanted:
        if name == "curve":  # kerb along one road edge, sometimes painted red and white
            s, kw = sides[0], 0.05 * w
            segs = np.linspace(y0, h, 9)
            band = [(road.edge(s, y0), y0), (road.edge(s, h), h), (road.edge(s, h) - s * kw, h)]
            paint = [
                (
                    "poly",
                    [
                        (road.edge(s, a), a),
                        (road.edge(s, b), b),
                        (road.edge(s, b) - s * kw * road.p(b), b),
                        (road.edge(s, a) - s * kw * road.p(a), a),
                    ],
                )
                for a, b in zip(segs[::2], segs[1::2])
            ]
            red = rng.random() < 0.5

            def kerb(band=band, paint=paint, red=red) -> None:
                c.paint(
                    [("poly", band)], cls=cls["curve"], colour=(190, 185, 175), temp=env.ground + 8
                )
                if red:
                    c.paint(paint, cls=cls["curve"], colour=(200, 50, 50), temp=env.ground + 8)

            jobs.append(Job(-2, cls["curve"], kerb))
        elif name == "guardrail":  # metal rail on posts along the other edge: cold
            s = sides[1]
            ys = (y0 + 2, h + 0.3 * (h - road.horizon))

            def rail(s=s, ys=ys) -> None:
                def at(y: float, k: float) -> tuple[float, float]:
                    return road.edge(s, y) + s * 3, y - k * env.unit * road.p(y)

                posts = [
                    ("line", [at(y, 0), at(y, 0.6)], 0.06 * env.unit * road.p(y))
                    for y in np.linspace(ys[0] + 4, h, 5)
                ]
                c.paint(
                    [
                        ("poly", [at(ys[0], 0.6), at(ys[1], 0.6), at(ys[1], 0.3), at(ys[0], 0.3)]),
                        *posts,
                    ],
                    cls=cls["guardrail"],
                    colour=(175, 180, 185),
                    temp=env.air - 15,
                )

            jobs.append(Job(-1, cls["guardrail"], rail))
        elif name == "bump":  # yellow and black stripes across the road
            y = road.horizon + rng.uniform(0.35, 0.9) * (h - road.horizon)
            t = max(2.0, 0.12 * env.unit * road.p(y))
            xs = np.linspace(max(road.edge(-1, y), 0), min(road.edge(1, y), w), 9)

            def stripes(y=y, t=t, xs=xs) -> None:
                for k in range(8):
                    c.paint(
                        [("rect", (xs[k], y - t, xs[k + 1], y))],
                        cls=cls["bump"],
                        colour=(235, 200, 30) if k % 2 else (30, 30, 30),
                        temp=env.ground + 5,
                    )

            jobs.append(Job(-1, cls["bump"], stripes))
        else:
            for _ in range(int(rng.integers(1, 3))):
                x, y = _place(c, road, on_road=name != "car_stop" or rng.random() < 0.5)
                if jobs and rng.random() < 0.4:  # crowd towards the centre: occlusion
                    x = float(np.clip(0.3 * x + 0.7 * rng.uniform(0.35, 0.65) * w, 2, w - 2))
                jobs.append(Job(y, cls[name], _mfnet_thing(c, cls, name, x, y, road.p(y), env)))
    _draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _mfnet_thing(
    c: Canvas, cls: dict[str, int], name: str, x: float, y: float, p: float, env: Env
) -> Callable[[], None]:
    rng = c.rng
    if name == "car":
        return lambda: car(c, cls["car"], x, y, p, env)
    if name == "person":
        return lambda: person(c, cls["person"], x, y, p, env)
    if name == "color_cone":
        return lambda: cone(c, cls["color_cone"], x, y, p, env)
    if name == "bike":
        rider = rng.random() < 0.6

        def ridden() -> None:
            two_wheeler(c, cls["bike"], x, y, p, env, motor=False)
            if rider:
                person(c, cls["person"], x, y - 0.35 * env.unit * p, 0.85 * p, env)

        return ridden
    if name == "car_stop":  # a low concrete or yellow wheel stop: cold
        hw, ht = 0.5 * env.unit * p, max(2.0, 0.12 * env.unit * p)
        colour = _colour(rng, [(200, 200, 195), (220, 190, 40)])
        return lambda: c.paint(
            [("rect", (x - hw, y - ht, x + hw, y))],
            cls=cls["car_stop"],
            colour=colour,
            temp=env.ground - 3,
        )
    raise KeyError(name)


def _fmb(c: Canvas, index: int, cls: dict[str, int]) -> str:
    """A street with every FMB class; day, night, fog or glare (FMB's hard conditions)."""
    rng, w = c.rng, c.w
    condition = str(rng.choice(["day", "night", "fog", "glare"], p=[0.4, 0.3, 0.15, 0.15]))
    night = condition == "night"
    env = Env(
        ground=rng.uniform(85, 100) if night else rng.uniform(115, 140),
        air=rng.uniform(70, 85) if night else rng.uniform(95, 115),
        unit=0.16 * w,
    )
    labels = {n: cls[n] for n in ("sky", "building", "vegetation", "road", "sidewalk")}
    road = _street(c, env, night, labels)
    _distractors(c, road, env, int(rng.integers(0, 3)))
    pool = ["lamp", "sign", "person", "car", "truck", "bus", "motorcycle", "bicycle", "pole"]
    required = _required(pool, index, 3)
    wanted = required + [n for n in pool if n not in required and rng.random() < 0.3]
    jobs: list[Job] = []
    for name in wanted:
        for _ in range(1 if name in ("truck", "bus") else int(rng.integers(1, 3))):
            on_road = name in ("car", "truck", "bus", "motorcycle") or (
                name in ("person", "bicycle") and rng.random() < 0.4
            )
            x, y = _place(c, road, on_road=on_road)
            if jobs and rng.random() < 0.4:
                x = float(np.clip(0.3 * x + 0.7 * rng.uniform(0.3, 0.7) * w, 2, w - 2))
            jobs.append(Job(y, cls[name], _fmb_thing(c, cls, name, x, y, road.p(y), env, night)))
    _draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _fmb_thing(
    c: Canvas, cls: dict[str, int], name: str, x: float, y: float, p: float, env: Env, night: bool
) -> Callable[[], None]:
    rng, u = c.rng, env.unit * p
    if name == "person":
        return lambda: person(c, cls["person"], x, y, p, env)
    if name == "car":
        return lambda: car(c, cls["car"], x, y, p, env)
    if name == "truck":
        return lambda: truck(c, cls["truck"], x, y, p, env)
    if name == "bus":
        return lambda: bus(c, cls["bus"], x, y, p, env)
    if name in ("motorcycle", "bicycle"):
        motor, rider = name == "motorcycle", rng.random() < (0.8 if name == "motorcycle" else 0.5)

        def ridden() -> None:
            two_wheeler(c, cls[name], x, y, p, env, motor=motor)
            if rider:
                person(c, cls["person"], x, y - 0.35 * env.unit * p, 0.85 * p, env)

        return ridden
    if name == "pole":
        return lambda: pole(c, cls["pole"], x, y, p, env, height=rng.uniform(3.5, 6))
    if name == "lamp":  # pole + arm + lamp head: warm, and a light source at night

        def lamp() -> None:
            top = pole(c, cls["pole"], x, y, p, env, height=4.5)
            d = 1 if x < c.w / 2 else -1
            head = c.paint(
                [
                    ("ellipse", (x + d * 0.35 * u, top, x + d * 0.8 * u, top + 0.2 * u)),
                    ("line", [(x, top), (x + d * 0.4 * u, top + 0.05 * u)], 0.06 * u),
                ],
                cls=cls["lamp"],
                colour=(200, 200, 190),
                temp=env.air + (55 if night else 20),
            )
            if night:
                c.emit(head, (255, 240, 200))

        return lamp
    if name == "sign":  # a coloured plate on a pole: vivid in RGB, cold in thermal
        shape = str(rng.choice(["rect", "ellipse"]))
        colour = _colour(rng, [(200, 30, 30), (30, 70, 180), (240, 200, 30), (240, 240, 240)], 6)

        def sign() -> None:
            top = pole(c, cls["pole"], x, y, p, env, height=2.6)
            c.paint(
                [(shape, (x - 0.3 * u, top - 0.3 * u, x + 0.3 * u, top + 0.3 * u))],
                cls=cls["sign"],
                colour=colour,
                temp=env.air - 10,
            )

        return sign
    raise KeyError(name)


def _pst900(c: Canvas, index: int, cls: dict[str, int]) -> str:
    """A mine tunnel: rock texture, floor, beams, warm pipes; mostly dark (a robot's lamp)."""
    rng, w, h = c.rng, c.w, c.h
    condition = "dark" if rng.random() < 0.6 else "lit"
    env = Env(ground=rng.uniform(80, 100), air=rng.uniform(85, 100), unit=0.32 * h)
    floor = rng.uniform(0.45, 0.6) * h
    rock = _colour(rng, [(120, 105, 90), (100, 100, 105), (140, 120, 95)])
    c.paint([("rect", (0, 0, w, floor))], cls=0, colour=rock, temp=env.air, texture=12)
    c.rgb[: int(floor)] *= (0.6 + 0.8 * smooth_noise(rng, int(floor), w, 10))[..., None]
    c.thermal[: int(floor)] += 12 * smooth_noise(rng, int(floor), w, 5) - 6
    c.paint(
        [("rect", (0, floor, w, h))],
        cls=0,
        colour=_colour(rng, [(90, 80, 70), (70, 70, 70)]),
        temp=env.ground,
        texture=14,
    )
    for bx in rng.uniform(0, w, int(rng.integers(1, 4))):  # timber supports
        c.paint(
            [("rect", (bx, 0, bx + 0.04 * w, floor + 0.05 * h))],
            cls=0,
            colour=(80, 55, 35),
            temp=env.air - 4,
        )
    if rng.random() < 0.5:  # a pipe along the wall, often hot: a warm background distractor
        py = rng.uniform(0.1, 0.4) * h
        c.paint(
            [("rect", (0, py, w, py + 0.05 * h))],
            cls=0,
            colour=(150, 150, 150),
            temp=env.air + (rng.uniform(50, 80) if rng.random() < 0.6 else -5),
        )
    pool = ["fire_extinguisher", "backpack", "hand_drill", "survivor"]
    required = _required(pool, index, 2)
    wanted = required + [n for n in pool if rng.random() < 0.3]
    jobs: list[Job] = []
    last_x = None
    for name in wanted:
        y = rng.uniform(floor + 0.15 * (h - floor), h)
        x = rng.uniform(0.1, 0.9) * w
        if last_x is not None and rng.random() < 0.5:  # next to the previous one: occlusion
            x = float(np.clip(last_x + rng.normal(0, 0.08 * w), 0, w))
        last_x = x
        s = 0.55 + 0.45 * (y - floor) / (h - floor)
        jobs.append(Job(y, cls[name], _pst_thing(c, cls, name, x, y, s, env)))
    _draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _pst_thing(
    c: Canvas, cls: dict[str, int], name: str, x: float, y: float, s: float, env: Env
) -> Callable[[], None]:
    rng, u, k = c.rng, env.unit * s, cls[name]
    if name == "survivor":  # standing, sitting or lying: the hottest thing in the tunnel
        lying = rng.random() < 0.4
        return lambda: person(c, k, x, y, s * 1.2, env, lying=lying)
    if name == "fire_extinguisher":  # red cylinder with a black valve and hose: cold
        hw, hh = 0.14 * u, 0.75 * u

        def extinguisher() -> None:
            c.paint(
                [
                    ("rect", (x - hw, y - hh, x + hw, y)),
                    ("ellipse", (x - hw, y - hh - hw, x + hw, y - hh + hw)),
                ],
                cls=k,
                colour=(205, 25, 25),
                temp=env.air - 6,
            )
            c.paint(
                [
                    ("rect", (x - 0.4 * hw, y - hh - 1.6 * hw, x + 0.4 * hw, y - hh)),
                    ("line", [(x + 0.3 * hw, y - hh - hw), (x + 2 * hw, y - 0.5 * hh)], 0.06 * u),
                ],
                cls=k,
                colour=(25, 25, 25),
                temp=env.air - 6,
            )

        return extinguisher
    if name == "backpack":  # a bag with a darker pocket: near ambient
        bw, bh = 0.5 * u, 0.6 * u
        col = _colour(rng, [(230, 120, 30), (40, 60, 150), (30, 30, 30), (60, 120, 60)])

        def backpack() -> None:
            c.paint(
                [
                    ("rect", (x - bw / 2, y - 0.8 * bh, x + bw / 2, y)),
                    ("ellipse", (x - bw / 2, y - bh, x + bw / 2, y - 0.6 * bh)),
                ],
                cls=k,
                colour=col,
                temp=env.ground + 4,
            )
            c.paint(
                [("rect", (x - 0.35 * bw, y - 0.45 * bh, x + 0.35 * bw, y - 0.1 * bh))],
                cls=k,
                colour=tuple(0.7 * np.asarray(col)),
                temp=env.ground + 4,
            )

        return backpack
    if name == "hand_drill":  # body with a warm motor, black grip and battery, grey chuck
        dw, dh = 0.55 * u, 0.5 * u
        d = 1 if rng.random() < 0.5 else -1
        col = _colour(rng, [(240, 190, 20), (220, 90, 20), (40, 140, 60)])
        motor = env.air + rng.uniform(55, 80)

        def drill() -> None:
            c.paint(
                [("rect", (x - dw / 2, y - dh, x + dw / 2, y - 0.65 * dh))],
                cls=k,
                colour=col,
                temp=motor,
            )
            c.paint(
                [
                    (
                        "poly",
                        [
                            (x - d * 0.2 * dw, y - 0.7 * dh),
                            (x + d * 0.05 * dw, y - 0.7 * dh),
                            (x + d * 0.1 * dw, y - 0.2 * dh),
                            (x - d * 0.12 * dw, y - 0.2 * dh),
                        ],
                    ),
                    ("rect", (x - 0.25 * dw, y - 0.22 * dh, x + 0.3 * dw, y)),
                ],
                cls=k,
                colour=(30, 30, 30),
                temp=env.air + 25,
            )
            c.paint(
                [("rect", (x + d * dw / 2, y - 0.9 * dh, x + d * 0.7 * dw, y - 0.75 * dh))],
                cls=k,
                colour=(160, 160, 160),
                temp=env.air,
            )

        return drill
    raise KeyError(name)


def _projection_holes(rng: np.random.Generator, thermal: np.ndarray) -> None:
    """PST900's thermal images have zero-valued holes where the projection to RGB left gaps."""
    h, w = thermal.shape
    if rng.random() < 0.6:
        band = int(rng.uniform(0.02, 0.08) * w) + 1
        if rng.random() < 0.5:
            thermal[:, :band] = 0
        else:
            thermal[:, w - band :] = 0
    for _ in range(int(rng.integers(0, 3))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 0.03 * w + 1.5)
        yy, xx = np.ogrid[:h, :w]
        thermal[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthFamily:
    """How one stand-in imitates its benchmark."""

    aspect: tuple[int, int]  # (width, height) ratio of the real images
    splits: tuple[str, ...]
    scene: Callable[[Canvas, int, dict[str, int]], str]  # draws, returns the condition
    day_night_ids: bool = False  # MFNet: ids end in D / N, and `subset` records day / night


FAMILIES = {
    "synth-mfnet": SynthFamily((4, 3), ("train", "val", "test"), _mfnet, day_night_ids=True),
    "synth-pst900": SynthFamily((16, 9), ("train", "test"), _pst900),
    "synth-fmb": SynthFamily((4, 3), ("train", "test"), _fmb),
}


def family(name: str) -> SynthFamily:
    if name not in FAMILIES:
        raise SynthError(f"unknown synthetic dataset {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def image_size(name: str, width: int) -> tuple[int, int]:
    """(width, height) of the stand-in's images: the real aspect ratio at the given width."""
    aw, ah = family(name).aspect
    return width, round(width * ah / aw)


@dataclass(frozen=True)
class SynthSample:
    id: str
    split: str
    subset: str
    condition: str
    rgb: np.ndarray  # (H, W, 3) uint8
    thermal: np.ndarray  # (H, W) uint8
    label: np.ndarray  # (H, W) uint8


def render(name: str, split: str, index: int, *, width: int, seed: int) -> SynthSample:
    """One sample, a pure function of (name, split, index, width, seed)."""
    fam = family(name)
    if split not in (*fam.splits, PRETRAIN_SPLIT):
        raise SynthError(f"{name}: no split {split!r}; splits: {', '.join(fam.splits)}")
    w, h = image_size(name, width)
    rng = np.random.default_rng([seed, DATASET_CODES[name], SPLIT_CODES[split], index])
    c = Canvas(rng, w, h)
    classes = spec_for(name).classes
    condition = fam.scene(c, index, {n: i for i, n in enumerate(classes)})
    if split == PRETRAIN_SPLIT:  # a foundation model's photographs: the scene in daylight
        condition = "day"
    rgb, thermal = finish(c, condition)
    if name == "synth-pst900":
        _projection_holes(rng, thermal)
    if fam.day_night_ids:
        subset = "night" if condition == "night" else "day"
        sample_id = f"{split}{index:05d}{'N' if subset == 'night' else 'D'}"
    else:
        subset, sample_id = "", f"{split}{index:05d}"
    return SynthSample(sample_id, split, subset, condition, rgb, thermal, c.label.copy())


def _same_stand_in(out: Path, name: str) -> bool:
    """Whether `out` holds a stand-in `name` that sartm generated (regenerable, so replaceable)."""
    if not written_by_sartm(out, META_NAME):
        return False
    meta = load_meta(out)
    return meta.get("synthetic") is True and meta.get("name") == name


def generate(
    name: str,
    out: str | Path,
    *,
    samples: dict[str, int],
    width: int,
    seed: int,
    force: bool = False,
) -> dict[str, object]:
    """Write the stand-in `name` in the common layout under `out`; returns a short summary. An
    existing `out` is replaced only when sartm wrote it (its meta.json): a stand-in of the same
    name freely (it is made again from its settings, nothing is lost), anything else with `force`."""
    fam = family(name)
    if not 32 <= width <= 1024:
        raise SynthError(f"{name}: width must be 32..1024 pixels, got {width}")
    counts = {split: int(samples.get(split, 0)) for split in fam.splits}
    for split, n in counts.items():
        if n < 0 or (split != "val" and n < 1) or n > 99999:
            raise SynthError(f"{name}: {split} needs 1..99999 samples, got {n}")
    spec = spec_for(name)
    w, h = image_size(name, width)
    real = {"mfnet": "MFNet", "pst900": "PST900", "fmb": "FMB"}[spec.name]
    extra = {
        "description": (
            f"SYNTHETIC stand-in for {real}: procedurally drawn RGB-thermal scenes with {real}'s "
            "classes, label ids, splits and aspect ratio. Not real data; results on it are not "
            "comparable to the paper."
        ),
        "imitates": spec.name,
        "generator": {
            "version": GENERATOR_VERSION,
            "seed": seed,
            "width": w,
            "height": h,
            "samples": counts,
        },
        "conditions": {},
    }
    start = time.perf_counter()
    with LayoutWriter(
        Path(out),
        name=name,
        classes=spec.classes,
        palette=spec.palette,
        source=f"sartm synthetic generator v{GENERATOR_VERSION} (seed {seed})",
        synthetic=True,
        extra_meta=extra,
        force=force or _same_stand_in(Path(out), name),
    ) as writer:
        for split, n in counts.items():
            for index in range(n):
                s = render(name, split, index, width=width, seed=seed)
                writer.add(split, s.id, s.rgb, s.thermal, s.label, subset=s.subset)
                extra["conditions"][s.id] = s.condition
    return {
        "out": str(out),
        "splits": {k: v for k, v in counts.items() if v},
        "size": [w, h],
        "seconds": round(time.perf_counter() - start, 2),
    }
