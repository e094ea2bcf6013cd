"""MFNet (Ha et al., IROS 2017): urban driving, day and night, 640x480, 9 classes.

Original layout: images/<id>.png (4 channels: RGB + thermal in the 4th, NOT alpha),
labels/<id>.png, train.txt / val.txt / test.txt (the splits), test_day.txt / test_night.txt
(subsets of test; other ids get day/night from their D/N suffix). Images in no list (e.g. flipped
copies some tools add) are left out. Its stand-in is a road seen from a car, half at night.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sartm.data.builtin.entry import Builtin, DatasetSpec, Mirror, Remote, StandIn
from sartm.data.common import DataError
from sartm.data.drawing import (
    Canvas,
    Env,
    Job,
    car,
    cone,
    distractors,
    draw_all,
    person,
    pick_colour,
    place,
    required_classes,
    street,
    two_wheeler,
)
from sartm.data.readers import (
    PNG,
    Arrays,
    Reader,
    Sample,
    channel_count,
    decode_image,
    inside,
    list_images,
    read_label,
)

SPEC = DatasetSpec(
    name="mfnet",
    title="MFNet",
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

MIRRORS = (
    Mirror(
        name="gdrive",
        page="https://www.mi.t.u-tokyo.ac.jp/static/projects/mil_multispectral/",
        files=(
            Remote(
                "ir_seg_dataset.zip",
                "https://drive.google.com/drive/folders/18BQFWRfhXzSuMloUmtiBRFrr6NSrf8Fw",
                "gdrive-folder",
            ),
        ),
        note="the original MFNet release (ir_seg_dataset.zip, with the split lists) in the "
        "Google Drive folder that MFNet users cite; the project page describes the dataset",
    ),
    Mirror(
        name="rtfnet",
        page="https://github.com/yuxiangsun/RTFNet",
        files=(Remote("dataset.zip", "http://gofile.me/4jm56/CfukComo1", "page"),),
        note="RTFNet's preprocessed copy with the split files (a share page: download by hand)",
    ),
)


# --- the reader -----------------------------------------------------------------------------

# Real MFNet thermal frames have their commonest value in under 8% of pixels (../shared/samples:
# 2.8-7.8%); an alpha channel (or a blank frame) has one value almost everywhere.
MAX_MODAL_FRACTION = 0.9
SPLIT_LISTS = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
SUBSET_LISTS = {"day": "test_day.txt", "night": "test_night.txt"}
SUFFIX_SUBSET = {"D": "day", "N": "night"}


def read_rgbt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """MFNet's 4-channel PNG -> (RGB HxWx3, thermal HxW). The 4th channel is thermal, not alpha."""
    mode, array = decode_image(path)
    if mode != "RGBA":
        raise DataError(
            f"{path}: MFNet image must have 4 channels (RGB + thermal), found mode {mode} "
            f"({channel_count(mode)} channel(s)); a tool that treats the 4th channel as alpha "
            f"(e.g. OpenCV's default imread) may have dropped the thermal data"
        )
    thermal = np.ascontiguousarray(array[..., 3])
    counts = np.bincount(thermal.ravel(), minlength=256)
    modal = int(counts.argmax())
    if thermal.size and counts[modal] > MAX_MODAL_FRACTION * thermal.size:
        raise DataError(
            f"{path}: 4th channel is {modal} in {counts[modal] / thermal.size:.1%} of its pixels - "
            f"an alpha channel (or a blank frame), not MFNet thermal data"
        )
    return np.ascontiguousarray(array[..., :3]), thermal


def _read_id_list(path: Path) -> list[str]:
    """Ids one per line, with or without a .png extension; blank lines are skipped."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file of sample ids ({exc})") from exc
    ids: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        item = item.removesuffix(".png")
        if "/" in item or "\\" in item or item in (".", ".."):
            raise DataError(f"{path}:{number}: {line.strip()!r} is not a sample id")
        if item in ids:
            raise DataError(f"{path}:{number}: sample id {item!r} listed twice")
        ids.append(item)
    return ids


def index(raw: Path) -> tuple[list[Sample], int]:
    """MFNet's split lists -> samples; day/night subsets from the test lists, else the suffix."""
    for folder in ("images", "labels"):
        if not (raw / folder).is_dir():
            raise DataError(
                f"{raw / folder}: missing folder; expected MFNet's images/, labels/ and split lists"
            )
    lists = {s: raw / f for s, f in SPLIT_LISTS.items() if (raw / f).is_file()}
    if not lists:
        raise DataError(
            f"{raw}: no split list ({', '.join(SPLIT_LISTS.values())}); MFNet's splits "
            f"come from these files, shipped with the dataset"
        )
    split_of: dict[str, tuple[str, Path]] = {}
    for split, list_file in lists.items():
        ids = _read_id_list(inside(raw, list_file))
        if not ids:
            raise DataError(
                f"{list_file}: lists no sample ids, so the {split} split would be empty; "
                f"restore it from the dataset archive"
            )
        for sample_id in ids:
            if sample_id in split_of:
                other = split_of[sample_id][1]
                raise DataError(
                    f"{list_file}: duplicate sample id {sample_id!r} (also listed in {other})"
                )
            split_of[sample_id] = (split, list_file)
    subset_of: dict[str, str] = {}
    for subset, name in SUBSET_LISTS.items():
        list_file = raw / name
        if not list_file.is_file():
            continue
        for sample_id in _read_id_list(inside(raw, list_file)):
            if split_of.get(sample_id, ("",))[0] != "test":
                raise DataError(
                    f"{list_file}: sample id {sample_id!r} is not in test.txt "
                    f"(day/night lists are subsets of the test split)"
                )
            if sample_id in subset_of:
                raise DataError(f"{list_file}: sample id {sample_id!r} is both day and night")
            subset_of[sample_id] = subset
    images = list_images(raw / "images", PNG)
    labels = list_images(raw / "labels", PNG)
    samples: list[Sample] = []
    for sample_id, (split, list_file) in split_of.items():
        if sample_id not in images:
            raise DataError(
                f"{raw / 'images' / (sample_id + '.png')}: missing (sample {sample_id!r} is listed "
                f"in {list_file})"
            )
        if sample_id not in labels:
            raise DataError(
                f"{images[sample_id]}: no matching label {raw / 'labels' / (sample_id + '.png')}"
            )
        subset = subset_of.get(sample_id) or SUFFIX_SUBSET.get(sample_id[-1:], "")
        files = {"rgb": images[sample_id], "thermal": images[sample_id], "label": labels[sample_id]}
        samples.append(Sample(split, sample_id, files, subset))
    ignored = len(set(images) - set(split_of))
    return samples, ignored


def decode(sample: Sample) -> Arrays:
    rgb, thermal = read_rgbt(sample.files["rgb"])
    return rgb, thermal, read_label(sample.files["label"])


def is_root(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "labels").is_dir()


READER = Reader(
    index,
    decode,
    is_root,
    "MFNet original layout: images/<id>.png (RGB + thermal 4th channel), labels/<id>.png, "
    "split lists",
)


# --- the stand-in ---------------------------------------------------------------------------


def scene(c: Canvas, index: int, cls: dict[str, int]) -> str:
    """A road seen from a car: 4:3, half the samples at night (ids end in D or N)."""
    rng, w, h = c.rng, c.w, c.h
    night = index % 2 == 1  # alternate, so every split has both halves
    condition = "night" if night else ("glare" if rng.random() < 0.25 else "day")
    env = Env(
        ground=rng.uniform(85, 100) if night else rng.uniform(120, 140),
        air=rng.uniform(70, 85) if night else rng.uniform(100, 120),
        unit=0.16 * w,
    )
    road = street(c, env, night, {})
    distractors(c, road, env, int(rng.integers(0, 3)))
    pool = ["car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump"]
    required = required_classes(pool, index, 3)
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
                x, y = place(c, road, on_road=name != "car_stop" or rng.random() < 0.5)
                if jobs and rng.random() < 0.4:  # crowd towards the centre: occlusion
                    x = float(np.clip(0.3 * x + 0.7 * rng.uniform(0.35, 0.65) * w, 2, w - 2))
                jobs.append(Job(y, cls[name], _thing(c, cls, name, x, y, road.p(y), env)))
    draw_all(c, jobs, {cls[n] for n in required})
    return condition


def _thing(
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
        colour = pick_colour(rng, [(200, 200, 195), (220, 190, 40)])
        return lambda: c.paint(
            [("rect", (x - hw, y - ht, x + hw, y))],
            cls=cls["car_stop"],
            colour=colour,
            temp=env.ground - 3,
        )
    raise KeyError(name)


ENTRY = Builtin(
    spec=SPEC,
    mirrors=MIRRORS,
    reader=READER,
    stand_in=StandIn(
        code=11, aspect=(4, 3), splits=("train", "val", "test"), scene=scene, day_night_ids=True
    ),
)
