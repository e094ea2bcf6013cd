"""Drawing RGB-thermal scenes: the canvas, things, streets, lighting and the sensor model that
the synthetic stand-ins share (each dataset's own scene is in its sartm.data.builtin module).

Warm things (people, engines, tyres) are bright in thermal; cold things (cones, signs) show in RGB
by colour and shape but barely in thermal; night, fog, darkness and glare make RGB nearly useless.
Backgrounds are textured (smooth noise, stripes, windows, thermal fixed-pattern noise), warm and
coloured distractors are labelled background, and objects overlap (the label is the front object).
Every random draw comes from the canvas's generator, in a fixed order: the same seed draws the
same bytes, so the order of the calls here is part of every stand-in's output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# --------------------------------------------------------------------------------------------
# The canvas
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


def pick_colour(rng: np.random.Generator, choices: list[tuple[int, int, int]], jitter: float = 12):
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
    cloth, trousers = pick_colour(rng, CLOTHES), pick_colour(rng, CLOTHES)
    skin = pick_colour(rng, SKIN, 8)
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
    paint = pick_colour(rng, PAINT)
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
        colour=pick_colour(rng, [(220, 220, 215), (60, 90, 150), (170, 60, 40)]),
        temp=env.air + 10,
    )
    cab = (x + front * 0.22 * w, y - 0.7 * h, x + front * 0.5 * w, y - 0.15 * h)
    c.paint(
        [("rect", cab)],
        cls=cls,
        colour=pick_colour(rng, PAINT),
        temp=env.ground + rng.uniform(55, 80),
    )
    _wheels(c, cls, [x - 0.35 * w, x + 0.0, x + 0.35 * w], y, 0.12 * h, env.ground + 50)


def bus(c: Canvas, cls: int, x: float, y: float, s: float, env: Env) -> None:
    """Long body with a row of dark windows; hot rear engine, warm tyres."""
    rng, u = c.rng, env.unit * s
    w, h = 4.2 * u, 2.2 * u
    c.paint(
        [("rect", (x - w / 2, y - h, x + w / 2, y - 0.1 * h))],
        cls=cls,
        colour=pick_colour(rng, [(230, 200, 40), (40, 120, 200), (200, 40, 40), (240, 240, 240)]),
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
    col = pick_colour(rng, PAINT)
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
        colour=pick_colour(c.rng, [(120, 120, 125), (90, 95, 90)]),
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
# Streets, placing things, drawing order
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


def street(c: Canvas, env: Env, night: bool, labels: dict[str, int]) -> Road:
    """Sky, buildings, vegetation, road, kerbside ground: labelled when `labels` names them."""
    rng, w, h = c.rng, c.w, c.h
    horizon = rng.uniform(0.33, 0.45) * h
    sky = (25, 30, 45) if night else pick_colour(rng, [(120, 165, 215), (170, 190, 210)], 8)
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
        wall = pick_colour(rng, [(150, 140, 130), (110, 100, 95), (180, 170, 150), (90, 90, 100)])
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
                colour=pick_colour(rng, [(60, 110, 50), (40, 80, 40)]),
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


def place(c: Canvas, road: Road, *, on_road: bool = True) -> tuple[float, float]:
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


def distractors(c: Canvas, road: Road, env: Env, n: int) -> None:
    """Background things that look like a class in one modality only (labelled 0)."""
    rng = c.rng
    for _ in range(n):
        x, y = place(c, road, on_road=rng.random() < 0.6)
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
                colour=pick_colour(rng, [(240, 110, 30), (200, 40, 40)]),
                temp=env.air,
            )


@dataclass
class Job:
    """One thing to draw: far things (small depth) first; `cls` is checked for visibility."""

    depth: float
    cls: int
    draw: Callable[[], None]


def draw_all(c: Canvas, jobs: list[Job], required: set[int]) -> None:
    """Draw far to near (near occludes far: the label is the front object), then redraw in
    front any required thing that ended up completely hidden, so class coverage is guaranteed."""
    for job in sorted(jobs, key=lambda j: j.depth):
        job.draw()
    present = set(np.unique(c.label).tolist())
    for job in jobs:
        if job.cls in required and job.cls not in present:
            job.draw()
            present.add(job.cls)


def required_classes(pool: list[str], index: int, k: int) -> list[str]:
    """Classes this sample must show: rotating through the pool covers every class quickly."""
    return [pool[(index * k + j) % len(pool)] for j in range(k)]
