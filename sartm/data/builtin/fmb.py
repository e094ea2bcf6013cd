"""FMB (Liu et al., ICCV 2023, SegMiF): street scenes in hard conditions, 800x600, 15 classes.

Original layout: {train,test}/{Visible,Infrared,Label}/<id>.png (color/ is ignored); Infrared is
stored as three equal grey channels. Its stand-in is a street with every FMB class, by day,
night, fog or glare.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sartm.data.builtin.entry import Builtin, DatasetSpec, Mirror, Remote, StandIn
from sartm.data.drawing import (
    Canvas,
    Env,
    Job,
    bus,
    car,
    distractors,
    draw_all,
    person,
    pick_colour,
    place,
    pole,
    required_classes,
    street,
    truck,
    two_wheeler,
)
from sartm.data.readers import SplitLayout

SPEC = DatasetSpec(
    name="fmb",
    title="FMB",
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

MIRRORS = (
    Mirror(
        name="github",
        page="https://github.com/CharlesShan-hub/FMB_Backup/releases/tag/V1.0.0",
        files=(
            Remote(
                "train.zip",
                "https://github.com/CharlesShan-hub/FMB_Backup/releases/download/V1.0.0/train.zip",
                "http",
                "md5:896c457d6fadb828fced86d7c0e0d66f",
            ),
            Remote(
                "test.zip",
                "https://github.com/CharlesShan-hub/FMB_Backup/releases/download/V1.0.0/test.zip",
                "http",
                "md5:916b3482f1d5988046ea74c287bbf518",
            ),
        ),
        note="an unofficial mirror of the authors' files that publishes md5 digests",
    ),
    Mirror(
        name="gdrive",
        page="https://github.com/JinyuanLiu-CV/SegMiF",
        files=(
            Remote(
                "*",
                "https://drive.google.com/drive/folders/1T_jVi80tjgyHTQDpn-TjfySyW4CK1LlF",
                "gdrive-folder",
            ),
        ),
        note="the authors' Google Drive folder (linked from the SegMiF README)",
    ),
)

LAYOUT = SplitLayout(
    splits=("train", "test"),
    folders={"rgb": "Visible", "thermal": "Infrared", "label": "Label"},
    gray_rgb_thermal=True,
    description="FMB original layout {train,test}/{Visible,Infrared,Label}/<id>.png",
)


# --- the stand-in ---------------------------------------------------------------------------


def scene(c: Canvas, index: int, cls: dict[str, int]) -> str:
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
    road = street(c, env, night, labels)
    distractors(c, road, env, int(rng.integers(0, 3)))
    pool = ["lamp", "sign", "person", "car", "truck", "bus", "motorcycle", "bicycle", "pole"]
    required = required_classes(pool, index, 3)
    wanted = required + [n for n in pool if n not in required and rng.random() < 0.3]
    jobs: list[Job] = []
    for name in wanted:
        for _ in range(1 if name in ("truck", "bus") else int(rng.integers(1, 3))):
            on_road = name in ("car", "truck", "bus", "motorcycle") or (
                name in ("person", "bicycle") and rng.random() < 0.4
            )
            x, y = place(c, road, on_road=on_road)
            if jobs and rng.random() < 0.4:
                x = float(np.clip(0.3 * x + 0.7 * rng.uniform(0.3, 0.7) * w, 2, w - 2))
            jobs.append(Job(y, cls[name], _thing(c, cls, name, x, y, road.p(y), env, night)))
    draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _thing(
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
        colour = pick_colour(
            rng, [(200, 30, 30), (30, 70, 180), (240, 200, 30), (240, 240, 240)], 6
        )

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


ENTRY = Builtin(
    spec=SPEC,
    mirrors=MIRRORS,
    reader=LAYOUT,
    stand_in=StandIn(code=13, aspect=(4, 3), splits=("train", "test"), scene=scene),
)
