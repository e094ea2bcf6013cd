"""The synthetic stand-ins: layout, structure, determinism, and that thermal really matters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from sartm.cli import cli
from sartm.config import PROJECT_ROOT
from sartm.data import synth
from sartm.data.builtin import stand_in_names
from sartm.data.common import read_manifest
from sartm.data.layouts import prepare
from sartm.data.spec import spec_for

SMALL = {"train": 4, "val": 2, "test": 4}


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three stand-ins at the ci preset's size (train 8, val 4, test 4), width 96."""
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for name in stand_in_names():
        out[name] = root / name
        synth.generate(name, out[name], samples={"train": 8, "val": 4, "test": 4}, width=96, seed=0)
    return out


@pytest.mark.parametrize(
    ("name", "splits", "aspect"),
    [
        ("synth-mfnet", {"train": 8, "val": 4, "test": 4}, 4 / 3),
        ("synth-pst900", {"train": 8, "test": 4}, 16 / 9),
        ("synth-fmb", {"train": 8, "test": 4}, 4 / 3),
    ],
)
def test_layout_splits_and_aspect(made, name, splits, aspect):
    root = made[name]
    meta = json.loads((root / "meta.json").read_text())
    spec = spec_for(name)
    assert meta["name"] == name and meta["synthetic"] is True
    assert meta["description"].startswith("SYNTHETIC") and "not comparable" in meta["description"]
    assert meta["classes"] == list(spec.classes)
    assert meta["palette"] == [list(c) for c in spec.palette]
    assert meta["splits"] == splits  # PST900 / FMB: no val split even though val was asked for
    rows = read_manifest(root)
    assert len(rows) == sum(splits.values())
    assert set(meta["conditions"]) == {r["id"] for r in rows}
    for row in rows[:3]:
        rgb = Image.open(root / row["rgb"])
        thermal = Image.open(root / row["thermal"])
        label = Image.open(root / row["label"])
        assert (rgb.mode, thermal.mode, label.mode) == ("RGB", "L", "L")
        assert rgb.size == thermal.size == label.size
        w, h = rgb.size
        assert w == 96 and abs(w / h - aspect) < 0.02


def test_mfnet_day_night_structure(made):
    rows = read_manifest(made["synth-mfnet"])
    meta = json.loads((made["synth-mfnet"] / "meta.json").read_text())
    for row in rows:
        assert row["id"][-1] in "DN"
        assert row["subset"] == ("night" if row["id"].endswith("N") else "day")
        assert (meta["conditions"][row["id"]] == "night") == (row["subset"] == "night")
    test = [r for r in rows if r["split"] == "test"]
    assert {r["subset"] for r in test} == {"day", "night"}
    assert meta["subsets"]["test_day"] + meta["subsets"]["test_night"] == len(test)
    for name in ("synth-pst900", "synth-fmb"):
        assert all(r["subset"] == "" for r in read_manifest(made[name]))


@pytest.mark.parametrize("name", stand_in_names())
def test_every_class_in_every_split(made, name):
    meta = json.loads((made[name] / "meta.json").read_text())
    for split, counts in meta["class_pixel_counts"].items():
        missing = [c for c, n in zip(meta["classes"], counts) if n == 0]
        assert not missing, f"{name} {split}: no pixels of {missing}"


def test_conditions_cover_hard_cases(made):
    conds = {
        n: set(json.loads((made[n] / "meta.json").read_text())["conditions"].values())
        for n in stand_in_names()
    }
    assert {"day", "night"} <= conds["synth-mfnet"]
    assert "dark" in conds["synth-pst900"]
    assert "night" in conds["synth-fmb"] and conds["synth-fmb"] & {"fog", "glare"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for run in ("a", "b"):
        synth.generate("synth-mfnet", tmp_path / run, samples=SMALL, width=64, seed=5)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    synth.generate("synth-mfnet", tmp_path / "c", samples=SMALL, width=64, seed=6)
    a, c = _digests(tmp_path / "a"), _digests(tmp_path / "c")
    images = [k for k in a if k.endswith(".png")]
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in images if "/rgb/" in k)


def test_samples_do_not_depend_on_how_many_are_made(tmp_path):
    synth.generate(
        "synth-pst900", tmp_path / "few", samples={"train": 2, "test": 1}, width=64, seed=0
    )
    synth.generate(
        "synth-pst900", tmp_path / "many", samples={"train": 5, "test": 3}, width=64, seed=0
    )
    few, many = _digests(tmp_path / "few"), _digests(tmp_path / "many")
    shared = [k for k in few if k.endswith(".png")]
    assert len(shared) == 9 and all(few[k] == many[k] for k in shared)


def test_warm_classes_hot_cold_classes_not(made):
    """Class-conditional thermal statistics: people far above the background, cones not."""
    root = made["synth-mfnet"]
    classes = spec_for("synth-mfnet").classes
    th, lab = [], []
    for row in read_manifest(root):
        th.append(np.asarray(Image.open(root / row["thermal"])).ravel())
        lab.append(np.asarray(Image.open(root / row["label"])).ravel())
    th, lab = np.concatenate(th).astype(float), np.concatenate(lab)
    mean = {c: th[lab == i].mean() for i, c in enumerate(classes)}
    assert mean["person"] > mean["unlabeled"] + 50
    assert mean["car"] > mean["unlabeled"] + 15
    assert abs(mean["color_cone"] - mean["unlabeled"]) < 30


def _features(samples: list[synth.SynthSample]) -> tuple[np.ndarray, np.ndarray]:
    x = [np.concatenate([s.rgb.reshape(-1, 3), s.thermal.reshape(-1, 1)], 1) for s in samples]
    return np.concatenate(x).astype(np.float32) / 255, np.concatenate(
        [s.label.ravel() for s in samples]
    )


def _per_pixel_f1(train, test, columns: list[int], num_classes: int) -> np.ndarray:
    x, y = _features(train)
    pick = np.random.default_rng(0).choice(len(y), min(15000, len(y)), replace=False)
    clf = LogisticRegression(max_iter=300, class_weight="balanced").fit(
        x[pick][:, columns], y[pick]
    )
    xt, yt = _features(test)
    return f1_score(
        yt, clf.predict(xt[:, columns]), average=None, labels=range(num_classes), zero_division=0
    )


RGB, THERMAL, RGBT = [0, 1, 2], [3], [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("name", "dark", "light", "warm", "cold"),
    [
        ("synth-mfnet", {"night"}, {"day"}, "person", "color_cone"),
        ("synth-pst900", {"dark"}, {"lit"}, "survivor", "fire_extinguisher"),
        ("synth-fmb", {"night"}, {"day"}, "person", "vegetation"),
    ],
)
def test_thermal_carries_the_signal(name, dark, light, warm, cold):
    """A per-pixel logistic regression. In the dark, RGB alone barely finds people and RGB +
    thermal does. In daylight both modalities carry information: a cold class is found by RGB
    and not by thermal, the warm class the other way round, and together they do best."""
    classes = spec_for(name).classes
    train = [synth.render(name, "train", i, width=80, seed=0) for i in range(24)]
    test = [synth.render(name, "test", i, width=80, seed=0) for i in range(12)]

    def scores(conds: set[str], columns: list[int]) -> np.ndarray:
        pick = lambda ss: [s for s in ss if s.condition in conds]  # noqa: E731
        return _per_pixel_f1(pick(train), pick(test), columns, len(classes))

    w, c = classes.index(warm), classes.index(cold)
    night_rgb, night_rgbt = scores(dark, RGB), scores(dark, RGBT)
    assert night_rgbt[w] > night_rgb[w] + 0.4, (night_rgb[w], night_rgbt[w])
    assert night_rgbt.mean() > night_rgb.mean() + 0.08
    day_rgb, day_th, day_rgbt = scores(light, RGB), scores(light, THERMAL), scores(light, RGBT)
    assert day_rgb[c] > day_th[c] + 0.2, (day_rgb[c], day_th[c])
    assert day_th[w] > day_rgb[w] + 0.15, (day_th[w], day_rgb[w])
    assert day_rgbt.mean() > max(day_rgb.mean(), day_th.mean())


def test_cli_synth(tmp_path):
    out = tmp_path / "fmb"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "synth",
            "synth-fmb",
            "--out",
            str(out),
            "--samples-train",
            "2",
            "--samples-test",
            "1",
            "--width",
            "64",
            "--seed",
            "3",
            "--params",
            str(PROJECT_ROOT / "params.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC synth-fmb" in result.output and "train 2, test 1" in result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] == {
        "version": synth.GENERATOR_VERSION,
        "seed": 3,
        "width": 64,
        "height": 48,
        "samples": {"train": 2, "test": 1},
    }


def test_cli_synth_defaults_from_params(tmp_path, monkeypatch):
    """No options: sizes from params.yaml's synth section (ci preset), output under data.root."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "synth",
            "synth-pst900",
            "--preset",
            "ci",
            "--params",
            str(PROJECT_ROOT / "params.yaml"),
            "--set",
            "synth.width=48",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "data/ci/processed/synth-pst900/meta.json").read_text())
    assert meta["splits"] == {"train": 8, "test": 4}
    assert meta["generator"]["width"] == 48


def test_bad_requests():
    with pytest.raises(synth.SynthError, match="unknown synthetic dataset"):
        synth.render("synth-nope", "train", 0, width=64, seed=0)
    with pytest.raises(synth.SynthError, match="no split 'val'"):
        synth.render("synth-fmb", "val", 0, width=64, seed=0)
    with pytest.raises(synth.SynthError, match="width"):
        synth.generate("synth-fmb", "unused", samples=SMALL, width=8, seed=0)
    with pytest.raises(synth.SynthError, match="train needs"):
        synth.generate("synth-fmb", "unused", samples={"train": 0, "test": 1}, width=64, seed=0)


def test_cli_synth_never_replaces_a_folder_of_the_user(tmp_path, make_fmb):
    """An existing folder sartm did not write is refused, even with --force; another dataset
    sartm wrote needs --force; the same stand-in is simply made again (nothing is lost)."""
    args = ["--samples-train", "1", "--samples-test", "1", "--width", "32"]
    args += ["--params", str(PROJECT_ROOT / "params.yaml")]
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 cat")
    for force in ([], ["--force"]):
        result = CliRunner().invoke(
            cli, ["data", "synth", "synth-fmb", "--out", str(mine), *args, *force]
        )
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1
        assert f"{mine}: exists and was not written by sartm" in result.output
        assert "even with --force" in result.output
    assert _digests(mine) == {"photos/cat.jpg": hashlib.sha256(b"\xff\xd8 cat").hexdigest()}

    real = tmp_path / "fmb"
    prepare("fmb", raw=make_fmb(tmp_path / "raw"), out=real, progress=False)
    prepared = _digests(real)
    command = ["data", "synth", "synth-fmb", "--out", str(real), *args]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {real}: already exists; use --force to replace it"
    assert _digests(real) == prepared
    assert CliRunner().invoke(cli, [*command, "--force"]).exit_code == 0
    assert json.loads((real / "meta.json").read_text())["synthetic"] is True
    result = CliRunner().invoke(cli, [*command, "--seed", "9"])  # the same stand-in: made again
    assert result.exit_code == 0, result.output
    assert json.loads((real / "meta.json").read_text())["generator"]["seed"] == 9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
