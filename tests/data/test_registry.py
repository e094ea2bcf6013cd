"""The registry of built-in datasets (sartm.data.builtin): one entry, registered at run time and
edited nowhere else, makes a dataset known to every step that names the built-in ones."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image
from rawdata import make_zip

from sartm import config as cfgmod
from sartm.cli import cli
from sartm.config import PROJECT_ROOT
from sartm.data import builtin, download, synth
from sartm.data.builtin import Builtin, DatasetSpec, Mirror, Remote
from sartm.data.common import read_manifest
from sartm.data.layouts import prepare
from sartm.data.readers import SplitLayout
from sartm.data.spec import spec_for, spec_names
from sartm.pipeline.plan import Plan, wildcard_patterns

# A dataset with its own folder names and no synthetic stand-in: all a new dataset needs.
TINY = Builtin(
    spec=DatasetSpec(
        name="tiny",
        title="Tiny",
        classes=("background", "thing"),
        palette=((0, 0, 0), (255, 0, 0)),
        splits=("train", "test"),
        native_size=(8, 8),
    ),
    mirrors=(
        Mirror(
            name="example",
            page="https://example.org/tiny",
            files=(Remote("tiny.zip", "https://example.org/tiny.zip", "page"),),
            note="a share page (download by hand)",
        ),
    ),
    reader=SplitLayout(
        splits=("train", "test"),
        folders={"rgb": "RGB", "thermal": "IR", "label": "GT"},
        description="Tiny original layout {train,test}/{RGB,IR,GT}/<id>.png",
    ),
)
IDS = {"train": ["t1", "t2"], "test": ["u1"]}


@pytest.fixture
def tiny() -> Iterator[Builtin]:
    builtin.register(TINY)
    try:
        yield TINY
    finally:
        del builtin.BUILTIN["tiny"]


def write_raw(root: Path) -> Path:
    """The tiny layout: 8x8 PNGs, every class in every label."""
    rng = np.random.default_rng(0)
    for split, ids in IDS.items():
        for sample_id in ids:
            images = {
                "RGB": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                "IR": rng.integers(0, 256, (8, 8), dtype=np.uint8),
                "GT": (np.arange(64).reshape(8, 8) % 2).astype(np.uint8),
            }
            for folder, array in images.items():
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / split / folder / f"{sample_id}.png")
    return root


def tiny_params(tmp_path: Path) -> Path:
    """params.yaml with the tiny dataset in the full run and in the paper preset's sources."""
    data = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    data["runs"]["full"]["datasets"].append("tiny")
    data["presets"]["paper"]["sources"]["tiny"] = "tiny"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_spec_and_its_names(tiny):
    assert spec_for("tiny") is tiny.spec and "tiny" in spec_names()
    assert "synth-tiny" not in builtin.stand_in_names()  # no stand-in: real data only
    with pytest.raises(KeyError, match="unknown dataset 'synth-tiny'; known: mfnet, .*tiny"):
        spec_for("synth-tiny")
    with pytest.raises(synth.SynthError, match="unknown synthetic dataset 'synth-tiny'"):
        synth.render("synth-tiny", "train", 0, width=64, seed=0)


def test_prepare_reads_its_layout(tmp_path, tiny):
    raw = write_raw(tmp_path / "raw")
    result = prepare("tiny", raw=raw, out=tmp_path / "out", progress=False)
    assert result.splits == {"train": 2, "test": 1}
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["classes"] == ["background", "thing"] and meta["palette"] == [
        [0, 0, 0],
        [255, 0, 0],
    ]
    assert meta["prepared_from"] == tiny.reader.description
    assert sorted(r["id"] for r in read_manifest(tmp_path / "out")) == ["t1", "t2", "u1"]
    args = ["data", "prepare", "tiny", "--raw", str(raw), "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0 and "prepared tiny (test 1, train 2)" in result.output


def test_download_finds_its_mirrors_and_layout(tmp_path, tiny):
    assert download.mirrors("tiny") == tiny.mirrors
    assert "https://example.org/tiny.zip" in download.manual_instructions("tiny")
    archive = make_zip(write_raw(tmp_path / "src"), tmp_path / "tiny.zip", wrapper="Tiny_v1")
    root = tmp_path / "data"
    got = download.download("tiny", root=root, archives=[archive], progress=False, log=print)
    assert sorted(p.name for p in got.raw.iterdir()) == ["sartm-source.json", "test", "train"]
    assert prepare("tiny", raw=got.raw, out=tmp_path / "out", progress=False).splits["train"] == 2


def test_params_and_pipeline_accept_it(tmp_path):
    path = tiny_params(tmp_path)
    with pytest.raises(cfgmod.ConfigError, match="'tiny' is not allowed"):
        cfgmod.load_params(path)  # not registered: the schema does not know it
    builtin.register(TINY)
    try:
        params = cfgmod.load_params(path)
        cfg = cfgmod.resolve(params, dataset="tiny", run="full", preset="paper")
        assert cfg.data.dataset == "tiny" and "tiny" in cfgmod.logical_datasets(params)
        other = cfgmod.resolve(params, dataset="pst900", overrides=["data.dataset=tiny"])
        assert other.data.dataset == "tiny"  # a data source
        wrong = yaml.safe_load(path.read_text())
        wrong["datasets"] = {"tiny": {"raw": "r", "classes": "c.yaml", "runs": ["full"]}}
        (tmp_path / "own.yaml").write_text(yaml.safe_dump(wrong))
        with pytest.raises(cfgmod.ConfigError, match="datasets"):  # your own: not a built-in name
            cfgmod.load_params(tmp_path / "own.yaml")
        wrong = yaml.safe_load(path.read_text())
        wrong["pretrain"]["sources"] = ["synth-tiny"]
        (tmp_path / "stand-in.yaml").write_text(yaml.safe_dump(wrong))
        with pytest.raises(cfgmod.ConfigError, match="pretrain.sources.0: 'synth-tiny' is not"):
            cfgmod.load_params(tmp_path / "stand-in.yaml")  # it has no stand-in
        plan = Plan(params, "paper")
        assert plan.data_commands("tiny") == [
            plan.download_command("tiny"),
            plan.prepare_command("tiny"),
        ]
        patterns = wildcard_patterns()
        assert re.fullmatch(patterns["dataset"], "tiny") and re.fullmatch(patterns["cache"], "tiny")
        assert not re.fullmatch(patterns["source"], "synth-tiny")
    finally:
        del builtin.BUILTIN["tiny"]


def test_the_names_are_listed_in_the_registry_only():
    """The schema file and the Snakemake wiring leave the names to the registry."""
    for path in ("workflow/schemas/params.schema.json", "workflow/rules/common.smk"):
        text = (PROJECT_ROOT / path).read_text()
        named = [n for n in (*builtin.names(), *builtin.stand_in_names()) if n in text]
        assert not named, f"{path} names {named}"


def test_register_refuses_a_taken_name_or_stand_in_code():
    with pytest.raises(ValueError, match="'fmb': the name is already registered"):
        builtin.register(builtin.BUILTIN["fmb"])
    fmb = builtin.BUILTIN["fmb"]
    other = Builtin(
        DatasetSpec("other", "Other", fmb.spec.classes, fmb.spec.palette, ("train",), (8, 8)),
        (),
        fmb.reader,
        fmb.stand_in,
    )
    with pytest.raises(ValueError, match="stand-in code 13 is synth-fmb's"):
        builtin.register(other)
    assert "other" not in builtin.BUILTIN
