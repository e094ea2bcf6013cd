"""RGBTDataset over the common layout, and build_dataset from a real resolved configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sartm.config import PROJECT_ROOT, load_params, resolve
from sartm.data.common import DataError, LayoutWriter, read_manifest
from sartm.data.dataset import RGBTDataset, build_dataset
from sartm.data.spec import spec_for
from sartm.data.transforms import EvalTransform
from sartm.paths import processed_dir

PARAMS = load_params(PROJECT_ROOT / "params.yaml")


@pytest.fixture()
def mfnet(data_root: Path) -> Path:
    return processed_dir("synth-mfnet", data_root)


def ci_config(data_root: Path, *overrides: str):
    return resolve(
        PARAMS, dataset="mfnet", preset="ci", overrides=[f"data.root={data_root}", *overrides]
    )


def test_items_shapes_types_and_meta(mfnet):
    ds = RGBTDataset(mfnet, "test")
    assert len(ds) == 6 and ds.num_classes == 9 and ds.classes[2] == "person"
    assert ds.ignore_index == 255 and ds.synthetic and ds.palette[1] == [64, 0, 128]
    item = ds[0]
    assert set(item) == {"rgb", "thermal", "label", "id", "height", "width"}
    assert item["rgb"].shape == item["thermal"].shape == (3, 72, 96)
    assert item["rgb"].dtype == item["thermal"].dtype == torch.float32
    assert item["label"].shape == (72, 96) and item["label"].dtype == torch.long
    assert (item["height"], item["width"]) == (72, 96) and item["id"] == ds.ids[0]
    assert torch.equal(item["thermal"][0], item["thermal"][2])  # one channel replicated
    raw = np.array(Image.open(mfnet / "test" / "label" / f"{item['id']}.png"))
    assert torch.equal(item["label"], torch.from_numpy(raw).long())


def test_subsets_and_max_samples(mfnet):
    ds = RGBTDataset(mfnet, "test")
    day, night = ds.subset_ids("day"), ds.subset_ids("night")
    assert ds.subsets == ["day", "night"] and sorted(day + night) == sorted(ds.ids)
    assert all(i.endswith("D") for i in day) and all(i.endswith("N") for i in night)
    only_night = RGBTDataset(mfnet, "test", subset="night")
    assert only_night.ids == night
    assert RGBTDataset(mfnet, "train", max_samples=2).ids == RGBTDataset(mfnet, "train").ids[:2]
    with pytest.raises(DataError, match="subsets: day, night"):
        RGBTDataset(mfnet, "test", subset="dusk")
    with pytest.raises(DataError, match=r"manifest.csv: no samples in split 'valid'; splits: test"):
        RGBTDataset(mfnet, "valid")


def test_blank_modality(mfnet):
    item = RGBTDataset(mfnet, "test", blank="thermal")[0]
    assert (item["thermal"] == 0).all()  # authors: thermal /255 only, so black stays 0
    ref = RGBTDataset(mfnet, "test")[0]
    assert torch.equal(item["rgb"], ref["rgb"]) and torch.equal(item["label"], ref["label"])
    rgb_blank = RGBTDataset(mfnet, "test", blank="rgb")[0]["rgb"]
    assert torch.allclose(rgb_blank[0], torch.full((72, 96), -0.485 / 0.229))
    with pytest.raises(ValueError, match="blank"):
        RGBTDataset(mfnet, "test", blank="depth")


def test_unreadable_images_name_the_file(mfnet, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(mfnet, copy)
    ds = RGBTDataset(copy, "train")
    rows = [r for r in read_manifest(copy) if r["split"] == "train"]
    truncated = copy / rows[0]["thermal"]
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DataError, match=f"{truncated}: cannot read thermal image"):
        ds[0]
    Image.new("RGB", (96, 72)).save(copy / rows[1]["thermal"])
    with pytest.raises(DataError, match="thermal image has PIL mode 'RGB', expected L"):
        ds[1]
    (copy / rows[2]["label"]).unlink()
    with pytest.raises(DataError, match=f"{copy / rows[2]['label']}: missing label image"):
        ds[2]
    Image.new("L", (90, 72)).save(copy / rows[3]["label"])
    with pytest.raises(DataError, match=f"sample {rows[3]['id']}: image sizes differ"):
        ds[3]
    with pytest.raises(DataError, match="meta.json: missing"):
        RGBTDataset(tmp_path / "nowhere", "train")


def test_build_dataset_from_the_ci_config(data_root):
    cfg = ci_config(data_root)
    assert cfg.data.dataset == "synth-mfnet" and cfg.data.max_samples == 8
    train = build_dataset(cfg, "train", train=True)
    item = train[0]
    crop = cfg.data.crop_size
    assert item["rgb"].shape == (3, crop, crop) and item["label"].shape == (crop, crop)
    test = build_dataset(cfg, "test", train=False)
    item = test[0]
    size = cfg.data.eval_size
    assert item["rgb"].shape == (3, size, size)
    assert (item["height"], item["width"]) == (72, 96)  # padded, never resized
    assert (item["label"][72:] == 255).all()
    assert build_dataset(cfg, "test", train=False, subset="night").ids == test.subset_ids("night")
    capped = build_dataset(ci_config(data_root, "data.max_samples=2"), "test", train=False)
    assert len(capped) == 2


def test_build_dataset_computed_normalisation(data_root):
    cfg = ci_config(data_root, "data.normalisation=computed", "data.eval_size=96")
    meta = json.loads((processed_dir("synth-mfnet", data_root) / "meta.json").read_text())
    stats = meta["normalisation"]["computed"]
    ds = build_dataset(cfg, "test", train=False)
    item, raw = ds[0], ds.read(0)
    expected = (raw["thermal"][0].float() / 255 - stats["thermal_mean"][0]) / stats["thermal_std"][
        0
    ]
    assert torch.allclose(item["thermal"][1, :72], expected, atol=1e-5)


def test_build_dataset_refuses_another_dataset(data_root, tmp_path):
    shutil.copytree(processed_dir("synth-mfnet", data_root), processed_dir("synth-fmb", tmp_path))
    cfg = resolve(PARAMS, dataset="fmb", preset="ci", overrides=[f"data.root={tmp_path}"])
    with pytest.raises(DataError, match="holds dataset 'synth-mfnet'"):
        build_dataset(cfg, "train", train=True)


def test_dataloader_batches_and_seeded_workers(data_root):
    """Default collation works; augmentation follows torch's seed, also across workers."""
    cfg = ci_config(data_root)
    ds = build_dataset(cfg, "train", train=True)
    crop = cfg.data.crop_size

    def first_batch(seed: int, workers: int) -> dict:
        torch.manual_seed(seed)
        loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers)
        return next(iter(loader))

    a, b = first_batch(0, 2), first_batch(0, 2)
    assert a["rgb"].shape == (2, 3, crop, crop) and a["label"].shape == (2, crop, crop)
    assert isinstance(a["id"], list) and a["height"].dtype == torch.long
    assert a["id"] == b["id"] and torch.equal(a["rgb"], b["rgb"])
    assert torch.equal(a["label"], b["label"])
    c = first_batch(1, 0)
    assert not torch.equal(a["rgb"], c["rgb"])


def test_eval_transform_default_is_plain_normalisation(mfnet):
    ds = RGBTDataset(mfnet, "val")
    assert isinstance(ds.transform, EvalTransform) and ds.transform.eval_size is None
    assert ds[0]["rgb"].shape[-2:] == (72, 96)


SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples"


def test_real_pst900_sample_with_paper_settings(tmp_path):
    """A genuine 1280x720 PST900 pair through the common layout and the paper's transforms."""
    src = SAMPLES / "pst900" / "test"
    if not src.is_dir():
        pytest.skip(f"real samples not available ({src})")
    name = next((src / "rgb").glob("*.png")).stem
    arrays = [np.array(Image.open(src / m / f"{name}.png")) for m in ("rgb", "thermal", "labels")]
    spec = spec_for("pst900")
    root = processed_dir("pst900", tmp_path)
    with LayoutWriter(
        root,
        name="pst900",
        classes=spec.classes,
        palette=spec.palette,
        source="test",
        synthetic=False,
    ) as writer:
        writer.add("test", name, *arrays)
    cfg = resolve(PARAMS, dataset="pst900", preset="paper", overrides=[f"data.root={tmp_path}"])
    item = build_dataset(cfg, "test", train=False)[0]
    assert item["rgb"].shape == (3, 1280, 1280) and (item["height"], item["width"]) == (720, 1280)
    assert torch.equal(item["label"][:720], torch.from_numpy(arrays[2]).long())
    assert (item["label"][720:] == 255).all()
    assert (item["thermal"][:, :720] == 0).any()  # the projection holes survive (thermal /255)
    torch.manual_seed(0)
    crop = build_dataset(cfg, "test", train=True)[0]
    assert crop["rgb"].shape == (3, 1280, 1280)
    assert set(crop["label"].unique().tolist()) <= set(np.unique(arrays[2]).tolist()) | {255}
