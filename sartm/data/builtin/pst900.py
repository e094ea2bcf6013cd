"""PST900 (Shivakumar et al., ICRA 2020): subterranean search and rescue, 1280x720, 5 classes.

Original layout: {train,test}/{rgb,thermal,labels}/<id>.png (depth/ and thermal_raw/ are
ignored); the thermal images keep the zero holes of their projection onto RGB. Its stand-in is a
mine tunnel, mostly dark, with those holes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sartm.data.builtin.entry import Builtin, DatasetSpec, Mirror, Remote, StandIn
from sartm.data.drawing import (
    Canvas,
    Env,
    Job,
    draw_all,
    person,
    pick_colour,
    required_classes,
    smooth_noise,
)
from sartm.data.readers import SplitLayout

# Label ids follow the dataset (1 extinguisher, 3 drill). The authors' code lists the names with
# extinguisher and drill swapped, which corrupts their text teacher; we keep the correct order.
SPEC = DatasetSpec(
    name="pst900",
    title="PST900",
    classes=("background", "fire_extinguisher", "backpack", "hand_drill", "survivor"),
    palette=((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)),
    splits=("train", "test"),
    native_size=(1280, 720),
)

MIRRORS = (
    Mirror(
        name="gdrive",
        page="https://github.com/ShreyasSkandanS/pst900_thermal_rgb",
        files=(
            Remote(
                "PST900_RGBT_Dataset.zip",
                "https://drive.google.com/file/d/1f4QT7RFfHIEMYW80jrbBs3qo5qjKou9M/view",
                "gdrive",
            ),
        ),
        note="the authors' Google Drive link in the dataset's README (1.4 GB)",
    ),
)

LAYOUT = SplitLayout(
    splits=("train", "test"),
    folders={"rgb": "rgb", "thermal": "thermal", "label": "labels"},
    description="PST900 original layout {train,test}/{rgb,thermal,labels}/<id>.png",
)


# --- the stand-in ---------------------------------------------------------------------------


def scene(c: Canvas, index: int, cls: dict[str, int]) -> str:
    """A mine tunnel: rock texture, floor, beams, warm pipes; mostly dark (a robot's lamp)."""
    rng, w, h = c.rng, c.w, c.h
    condition = "dark" if rng.random() < 0.6 else "lit"
    env = Env(ground=rng.uniform(80, 100), air=rng.uniform(85, 100), unit=0.32 * h)
    floor = rng.uniform(0.45, 0.6) * h
    rock = pick_colour(rng, [(120, 105, 90), (100, 100, 105), (140, 120, 95)])
    c.paint([("rect", (0, 0, w, floor))], cls=0, colour=rock, temp=env.air, texture=12)
    c.rgb[: int(floor)] *= (0.6 + 0.8 * smooth_noise(rng, int(floor), w, 10))[..., None]
    c.thermal[: int(floor)] += 12 * smooth_noise(rng, int(floor), w, 5) - 6
    c.paint(
        [("rect", (0, floor, w, h))],
        cls=0,
        colour=pick_colour(rng, [(90, 80, 70), (70, 70, 70)]),
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
    required = required_classes(pool, index, 2)
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
        jobs.append(Job(y, cls[name], _thing(c, cls, name, x, y, s, env)))
    draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _thing(
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
        col = pick_colour(rng, [(230, 120, 30), (40, 60, 150), (30, 30, 30), (60, 120, 60)])

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
        col = pick_colour(rng, [(240, 190, 20), (220, 90, 20), (40, 140, 60)])
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


def projection_holes(rng: np.random.Generator, thermal: np.ndarray) -> None:
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


ENTRY = Builtin(
    spec=SPEC,
    mirrors=MIRRORS,
    reader=LAYOUT,
    stand_in=StandIn(
        code=12,
        aspect=(16, 9),
        splits=("train", "test"),
        scene=scene,
        thermal_effects=projection_holes,
    ),
)
