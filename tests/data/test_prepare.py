"""`prepare`: original layouts -> the common layout, exact pixels, and clear errors on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rawdata import (
    CUSTOM_IDS,
    FMB_IDS,
    HEIGHT,
    MFNET_IDS,
    PST900_IDS,
    WIDTH,
    label_map,
    pixels,
    save,
    source_arrays,
)

from sartm.cli import cli
from sartm.data import readers
from sartm.data.common import DataError, is_complete, load_meta, read_manifest
from sartm.data.layouts import load_class_file, prepare
from sartm.data.spec import spec_for


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def check_output(out: Path, ids: dict[str, list[str]], num_classes: int) -> list[dict[str, str]]:
    """Counts, manifest, and every written image equal to what the builders wrote."""
    meta = load_meta(out)
    assert meta["splits"] == {split: len(v) for split, v in ids.items()}
    assert meta["synthetic"] is False and meta["ignore_index"] == 255
    rows = read_manifest(out)
    assert sorted((r["split"], r["id"]) for r in rows) == sorted(
        (split, i) for split, v in ids.items() for i in v
    )
    for row in rows:
        expected = source_arrays(row["id"], num_classes)
        rgb, thermal, label = (read(out / row[m]) for m in ("rgb", "thermal", "label"))
        assert rgb.shape == (HEIGHT, WIDTH, 3) and thermal.shape == label.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(rgb, expected["rgb"])
        np.testing.assert_array_equal(thermal, expected["thermal"])
        np.testing.assert_array_equal(label, expected["label"])
        assert set(np.unique(label)) == set(range(num_classes))
    return rows


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial-" in p.name]


def test_mfnet(tmp_path, make_mfnet):
    raw = make_mfnet(tmp_path / "raw")
    out = tmp_path / "out"
    result = prepare("mfnet", raw=raw, out=out, progress=False)
    assert not result.already
    rows = check_output(out, MFNET_IDS, 9)
    subsets = {r["id"]: r["subset"] for r in rows}
    assert subsets == {i: ("day" if i.endswith("D") else "night") for i in subsets}
    meta = load_meta(out)
    assert meta["name"] == meta["source"] == "mfnet"
    assert meta["classes"] == list(spec_for("mfnet").classes)
    assert meta["subsets"] == {
        "train_day": 1,
        "train_night": 1,
        "val_day": 1,
        "test_day": 1,
        "test_night": 1,
    }


def test_mfnet_lists_with_extension_and_subset_lists_win(tmp_path, make_mfnet):
    ids = {"train": ["00001D"], "test": ["00007X", "00008Y"]}
    raw = make_mfnet(tmp_path / "raw", ids, day_night_lists=False, with_extension=True)
    (raw / "test_day.txt").write_text("00007X\n")
    (raw / "test_night.txt").write_text("00008Y.png\n")
    save(raw / "images" / "00009D_flip.png", np.dstack([pixels(1, 3), pixels(2, low=1)]))
    result = prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert result.ignored == 1  # an image in no list is not part of any split
    subsets = {r["id"]: r["subset"] for r in read_manifest(tmp_path / "out")}
    assert subsets == {"00001D": "day", "00007X": "day", "00008Y": "night"}


def test_mfnet_thermal_is_fourth_channel_of_real_samples(tmp_path, samples_dir):
    out = tmp_path / "mfnet"
    prepare("mfnet", raw=samples_dir / "mfnet", out=out, progress=False)
    meta = load_meta(out)
    assert meta["splits"] == {"train": 2, "val": 1, "test": 1}
    assert meta["subsets"]["test_night"] == 1
    for row in read_manifest(out):
        source = read(samples_dir / "mfnet" / "images" / f"{row['id']}.png")
        assert source.shape == (480, 640, 4)
        np.testing.assert_array_equal(read(out / row["thermal"]), source[..., 3])
        np.testing.assert_array_equal(read(out / row["rgb"]), source[..., :3])
        label = read(out / row["label"])
        np.testing.assert_array_equal(
            label, read(samples_dir / "mfnet" / "labels" / f"{row['id']}.png")
        )
        assert label.max() < 9
        assert row["subset"] == ("day" if row["id"].endswith("D") else "night")


def test_pst900_ignores_depth_and_raw_thermal(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw")
    prepare("pst900", raw=raw, out=tmp_path / "out", progress=False)
    check_output(tmp_path / "out", PST900_IDS, 5)
    meta = load_meta(tmp_path / "out")
    assert meta["classes"] == list(spec_for("pst900").classes) and meta["subsets"] == {}
    assert not (tmp_path / "out" / "train" / "depth").exists()


def test_pst900_real_samples(tmp_path, samples_dir):
    out = tmp_path / "pst900"
    prepare("pst900", raw=samples_dir / "pst900", out=out, progress=False)
    assert load_meta(out)["splits"] == {"train": 1, "test": 1}
    for row in read_manifest(out):
        thermal = read(out / row["thermal"])
        assert thermal.shape == (720, 1280) and (thermal == 0).any()  # projection holes kept
        assert read(out / row["rgb"]).shape == (720, 1280, 3)
        assert set(np.unique(read(out / row["label"]))) <= set(range(5))


def test_fmb_gray_infrared_to_one_channel(tmp_path, make_fmb):
    raw = make_fmb(tmp_path / "raw")
    prepare("fmb", raw=raw, out=tmp_path / "out", progress=False)
    check_output(tmp_path / "out", FMB_IDS, 15)
    meta = load_meta(tmp_path / "out")
    assert (
        meta["classes"] == list(spec_for("fmb").classes) and "rounded mean" in meta["thermal_from"]
    )


def test_fmb_real_samples_with_added_labels(tmp_path, samples_dir):
    raw = tmp_path / "fmb"
    shutil.copytree(samples_dir / "fmb", raw)
    for visible in sorted(raw.glob("*/Visible/*.png")):
        width, height = Image.open(visible).size
        columns = np.arange(width) * 15 // width  # every class 0..14
        save(
            visible.parent.parent / "Label" / visible.name,
            np.broadcast_to(columns, (height, width)).astype(np.uint8),
        )
    out = tmp_path / "out"
    prepare("fmb", raw=raw, out=out, progress=False)
    assert load_meta(out)["splits"] == {"train": 2, "test": 2}
    for row in read_manifest(out):
        infrared = read(raw / row["split"] / "Infrared" / f"{row['id']}.png")
        thermal = read(out / row["thermal"])
        assert thermal.shape == (600, 800)
        np.testing.assert_array_equal(thermal, infrared[..., 0])
        assert set(np.unique(read(out / row["label"]))) == set(range(15))


def test_custom_yaml_and_json_class_files(tmp_path, make_custom):
    raw, classes = make_custom(tmp_path / "raw")
    for path in sorted((raw / "test" / "rgb").glob("*.png")):  # colour images may be JPEG
        Image.open(path).save(path.with_suffix(".jpg"), quality=95)
        path.unlink()
    out = tmp_path / "out"
    prepare("custom-demo", raw=raw, out=out, classes_file=classes, progress=False)
    meta = load_meta(out)
    assert meta["name"] == meta["source"] == "custom-demo"
    assert meta["classes"] == ["background", "person", "car"]
    assert meta["palette"] == [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    assert meta["splits"] == {s: len(v) for s, v in CUSTOM_IDS.items()}
    as_json = tmp_path / "classes.json"
    as_json.write_text(
        json.dumps(
            {"classes": [{"name": "bg", "color": [1, 2, 3]}, {"name": "thing", "color": [4, 5, 6]}]}
        )
    )
    assert load_class_file(as_json) == (["bg", "thing"], [(1, 2, 3), (4, 5, 6)])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- {name: a}\n", "'color' is a required property"),
        ("- {name: a, color: [0, 0, 300]}\n", "300 is greater than the maximum"),
        ("- {name: a, color: [0, 0, 0]}\n- {name: a, color: [1, 1, 1]}\n", "duplicate class"),
        ("[]\n", "should be non-empty"),
        ("- {name: a, color: [0, 0\n", "cannot parse"),
    ],
)
def test_bad_class_files(tmp_path, content, message):
    path = tmp_path / "classes.yaml"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_class_file(path)
    assert str(path) in str(err.value)


def test_custom_needs_class_file_and_valid_name(tmp_path, make_custom):
    raw, _ = make_custom(tmp_path / "raw")
    with pytest.raises(DataError, match="--classes"):
        prepare("custom-demo", raw=raw, out=tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="unknown dataset"):
        prepare("custom demo", raw=raw, out=tmp_path / "out", progress=False)


# --- bad inputs: each error names the file and leaves no output ----------------------------


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:60])
    return path


def _garbage(path: Path) -> Path:
    path.write_text("not a png")
    return path


def _resave(path: Path, array: np.ndarray) -> Path:
    path.unlink()
    return save(path, array)


LAST = "32_bag2_frame01"  # the last sample written: earlier ones are already in the temp folder


@pytest.mark.parametrize(
    ("damage", "message", "named"),
    [
        (lambda r: _truncate(r / "test/rgb" / f"{LAST}.png"), "unreadable or truncated", "rgb"),
        (lambda r: _garbage(r / "test/thermal" / f"{LAST}.png"), "unreadable", "thermal"),
        (
            lambda r: _resave(r / "test/thermal" / f"{LAST}.png", np.ones((10, 12), np.uint8)),
            "sizes differ",
            "thermal",
        ),
        (
            lambda r: _resave(r / "test/rgb" / f"{LAST}.png", pixels(3)),
            "must have 3 channels",
            "rgb",
        ),
        (
            lambda r: _resave(r / "test/thermal" / f"{LAST}.png", pixels(3, 3)),
            "must have 1 channel",
            "thermal",
        ),
        (
            lambda r: _resave(r / "test/labels" / f"{LAST}.png", label_map(0, 7)),
            r"label values \[5, 6\] outside the class range 0..4",
            "labels",
        ),
        (
            lambda r: _resave(r / "test/labels" / f"{LAST}.png", pixels(0, 3)),
            "colour image",
            "labels",
        ),
        (
            lambda r: (
                (r / "test/thermal" / f"{LAST}.png").unlink() or r / "test/rgb" / f"{LAST}.png"
            ),
            "no matching thermal image",
            "rgb",
        ),
        (
            lambda r: save(r / "test/labels/orphan.png", label_map(0, 5)),
            "no matching rgb image",
            "labels",
        ),
    ],
    ids=[
        "truncated",
        "garbage",
        "size",
        "rgb-channels",
        "thermal-channels",
        "label-range",
        "colour-label",
        "missing-thermal",
        "orphan-label",
    ],
)
def test_bad_pst900_input(tmp_path, make_pst900, damage, message, named):
    raw = make_pst900(tmp_path / "raw")
    culprit = damage(raw)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message) as err:
        prepare("pst900", raw=raw, out=out, progress=False)
    assert str(culprit) in str(err.value), err.value
    assert f"/{named}/" in str(err.value)
    assert not out.exists() and no_partials(tmp_path)


def test_duplicate_ids_across_splits(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw", {"train": ["same"], "test": ["same"]})
    with pytest.raises(DataError, match="duplicate sample id 'same'") as err:
        prepare("pst900", raw=raw, out=tmp_path / "out", progress=False)
    assert str(raw / "test" / "rgb" / "same.png") in str(err.value)
    assert str(raw / "train" / "rgb" / "same.png") in str(err.value)
    assert not (tmp_path / "out").exists()


def test_label_255_is_ignore_not_an_error(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw")
    label = label_map(0, 5)
    label[:4] = 255
    _resave(raw / "test" / "labels" / f"{LAST}.png", label)
    prepare("pst900", raw=raw, out=tmp_path / "out", progress=False)
    assert 255 in read(tmp_path / "out" / "test" / "label" / f"{LAST}.png")


def test_mfnet_three_channel_image_refused(tmp_path, make_mfnet):
    raw = make_mfnet(tmp_path / "raw")
    path = _resave(raw / "images" / "00005N.png", pixels(5, 3))
    with pytest.raises(DataError, match="must have 4 channels") as err:
        prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert str(path) in str(err.value) and "imread" in str(err.value)
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


def test_mfnet_opaque_alpha_refused(tmp_path, make_mfnet):
    raw = make_mfnet(tmp_path / "raw")
    opaque = np.dstack([pixels(5, 3), np.full((HEIGHT, WIDTH), 255, np.uint8)])
    path = _resave(raw / "images" / "00002N.png", opaque)
    with pytest.raises(DataError, match="is 255 in 100.0% of its pixels - an alpha") as err:
        prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("value", [255, 128, 0])
def test_mfnet_fourth_channel_constant_but_one_pixel_refused(tmp_path, make_mfnet, value):
    raw = make_mfnet(tmp_path / "raw")
    fourth = np.full((HEIGHT, WIDTH), value, np.uint8)
    fourth[3, 5] = 77
    path = _resave(raw / "images" / "00002N.png", np.dstack([pixels(5, 3), fourth]))
    with pytest.raises(DataError, match=f"4th channel is {value} in 99.9% of its pixels") as err:
        prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert str(path) in str(err.value) and "not MFNet thermal data" in str(err.value)
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


@pytest.mark.parametrize(
    ("emptied", "named"),
    [(["train.txt"], "train.txt"), (["train.txt", "val.txt", "test.txt"], "train.txt")],
    ids=["train", "all"],
)
def test_mfnet_empty_split_list_named(tmp_path, make_mfnet, emptied, named):
    """An empty split list is named (not a dataset without that split, nor test_day.txt)."""
    raw = make_mfnet(tmp_path / "raw")
    for name in emptied:
        (raw / name).write_text("\n  \n")
    with pytest.raises(DataError, match="lists no sample ids") as err:
        prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{raw / named}:") and "test_day" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("damage", "message", "named"),
    [
        (lambda r: (r / "labels" / "00004D.png").unlink(), "no matching label", "images/00004D"),
        (lambda r: (r / "images" / "00004D.png").unlink(), "listed in", "test.txt"),
        (
            lambda r: (r / "val.txt").write_text("00003D\n00001D\n"),
            "duplicate sample id '00001D'",
            "val.txt",
        ),
        (lambda r: (r / "test_day.txt").write_text("00001D\n"), "not in test.txt", "test_day.txt"),
        (
            lambda r: [(r / f).unlink() for f in ("train.txt", "val.txt", "test.txt")],
            "no split list",
            "raw",
        ),
    ],
    ids=["missing-label", "missing-image", "id-in-two-splits", "subset-not-test", "no-lists"],
)
def test_bad_mfnet_input(tmp_path, make_mfnet, damage, message, named):
    raw = make_mfnet(tmp_path / "raw")
    damage(raw)
    with pytest.raises(DataError, match=message) as err:
        prepare("mfnet", raw=raw, out=tmp_path / "out", progress=False)
    assert named in str(err.value) and str(raw) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_fmb_false_colour_infrared_refused(tmp_path, make_fmb):
    raw = make_fmb(tmp_path / "raw")
    path = _resave(raw / "test" / "Infrared" / "00102.png", pixels(9, 3))
    with pytest.raises(DataError, match="differ by up to") as err:
        prepare("fmb", raw=raw, out=tmp_path / "out", progress=False)
    assert str(path) in str(err.value)
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


def test_missing_raw_folder(tmp_path):
    with pytest.raises(DataError, match="sartm data download fmb"):
        prepare("fmb", raw=tmp_path / "nope", out=tmp_path / "out", progress=False)


# --- reruns, --force, interruption -----------------------------------------------------------


def test_rerun_is_a_noop_and_force_rebuilds(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw")
    out = tmp_path / "out"
    prepare("pst900", raw=raw, out=out, progress=False)
    stamp = (out / "meta.json").stat().st_mtime_ns
    _truncate(raw / "test" / "rgb" / f"{LAST}.png")  # a rerun must not even read the raw data
    again = prepare("pst900", raw=raw, out=out, progress=False)
    assert again.already and again.splits == {"train": 2, "test": 1}
    assert (out / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="unreadable"):
        prepare("pst900", raw=raw, out=out, force=True, progress=False)
    assert is_complete(out) and (out / "meta.json").stat().st_mtime_ns == stamp  # old copy kept
    assert no_partials(tmp_path)
    with pytest.raises(DataError, match="already holds dataset 'pst900'"):
        prepare("fmb", raw=raw, out=out, progress=False)


def test_interrupted_prepare_leaves_nothing_complete(tmp_path, make_fmb, monkeypatch):
    raw = make_fmb(tmp_path / "raw")
    calls = {"n": 0}
    real = readers.read_label

    def interrupted(path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(readers, "read_label", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("fmb", raw=raw, out=tmp_path / "out", progress=False)
    assert calls["n"] == 3
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_prepare_defaults_and_messages(tmp_path, make_mfnet, make_custom):
    root = tmp_path / "data"
    make_mfnet(root / "raw" / "mfnet")
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "prepare", "mfnet", "--root", str(root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "prepared mfnet (test 2, train 2, val 1)" in result.output
    assert "test_day 1" in result.output
    assert is_complete(root / "processed" / "mfnet")
    result = runner.invoke(cli, ["data", "prepare", "mfnet", "--root", str(root)])
    assert result.exit_code == 0 and "already prepared" in result.output

    raw, classes = make_custom(tmp_path / "c" / "raw")
    args = [
        "data",
        "prepare",
        "custom",
        "--name",
        "demo",
        "--raw",
        str(raw),
        "--classes",
        str(classes),
        "--out",
        str(tmp_path / "c" / "out"),
        "--no-progress",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert load_meta(tmp_path / "c" / "out")["name"] == "custom-demo"
    result = runner.invoke(cli, ["data", "prepare", "custom", "--raw", str(raw)])
    assert result.exit_code == 2 and "--name" in result.output

    bad = runner.invoke(
        cli, ["data", "prepare", "pst900", "--raw", str(raw), "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "Error:" in bad.output and str(raw) in bad.output


# --- nothing of the user's is replaced, nothing outside --raw is read ----------------------------


def test_existing_folder_of_the_user_is_never_replaced(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw")
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "thesis.tex").write_text("years of work")
    before = {p.relative_to(mine) for p in mine.rglob("*")}
    for force in ([], ["--force"]):
        result = CliRunner().invoke(
            cli,
            ["data", "prepare", "pst900", "--raw", str(raw), "--out", str(mine), "--no-progress"]
            + force,
        )
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            f"Error: {mine}: exists and was not written by sartm (it holds no meta.json of "
            f"sartm's); refusing to replace it, even with --force: choose another output folder "
            f"or move it away yourself"
        ]
        assert {p.relative_to(mine) for p in mine.rglob("*")} == before
    assert (mine / "sub" / "thesis.tex").read_text() == "years of work" and no_partials(tmp_path)


def test_prepared_output_replaced_only_with_force(tmp_path, make_pst900):
    raw = make_pst900(tmp_path / "raw")
    out = tmp_path / "out"
    prepare("pst900", raw=raw, out=out, progress=False)
    (out / "extra.txt").write_text("old")
    prepare("pst900", raw=raw, out=out, force=True, progress=False)
    assert is_complete(out) and not (out / "extra.txt").exists()
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name or ".partial-" in p.name]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not prepare("pst900", raw=raw, out=empty, progress=False).already


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_out_overlapping_raw_refused(tmp_path, make_pst900, where):
    raw = make_pst900(tmp_path / "data" / "raw")
    out = {"same": raw, "inside": raw / "processed", "around": tmp_path / "data"}[where]
    before = {p.relative_to(tmp_path): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    for force in (False, True):
        with pytest.raises(DataError, match="--out overlaps --raw") as err:
            prepare("pst900", raw=raw, out=out, force=force, progress=False)
        assert str(raw) in str(err.value) and str(out) in str(err.value)
    assert {p.relative_to(tmp_path): p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_symlink_out_of_raw_refused(tmp_path, make_pst900, make_mfnet):
    raw = make_pst900(tmp_path / "raw")
    secret = save(tmp_path / "elsewhere" / "secret.png", pixels(7, 3))
    link = raw / "test" / "rgb" / f"{LAST}.png"
    link.unlink()
    link.symlink_to(secret)
    with pytest.raises(DataError, match="a symlink that leads outside") as err:
        prepare("pst900", raw=raw, out=tmp_path / "out", progress=False)
    assert str(err.value).startswith(f"{link}:") and str(secret) in str(err.value)
    assert not (tmp_path / "out").exists()

    link.unlink()  # a link that stays inside --raw is fine
    link.symlink_to(raw / "train" / "rgb" / "31_bag1a_frame01.png")
    prepare("pst900", raw=raw, out=tmp_path / "out", progress=False)

    mfnet = make_mfnet(tmp_path / "mfnet")
    lists = tmp_path / "lists"
    lists.mkdir()
    (mfnet / "val.txt").rename(lists / "val.txt")
    (mfnet / "val.txt").symlink_to(lists / "val.txt")
    with pytest.raises(DataError, match="a symlink that leads outside") as err:
        prepare("mfnet", raw=mfnet, out=tmp_path / "mf", progress=False)
    assert str(err.value).startswith(f"{mfnet / 'val.txt'}:")
