"""Joint transforms: geometry shared by RGB, thermal and label; padding; normalisation."""

from __future__ import annotations

import pytest
import torch

from sartm.data.common import DataError
from sartm.data.transforms import EvalTransform, Normalisation, TrainTransform

AUTH = Normalisation.authors()
MEAN = torch.tensor(AUTH.rgb_mean)[:, None, None]
STD = torch.tensor(AUTH.rgb_std)[:, None, None]


def raw_rgb(out: dict) -> torch.Tensor:
    """Undo the authors' normalisation: back to the 0..255 scale."""
    return (out["rgb"] * STD + MEAN) * 255


def ramp_sample(h: int, w: int, classes: int = 5) -> dict[str, torch.Tensor]:
    """Asymmetric along x: RGB channel 0 and thermal encode the column, the label its band."""
    x = torch.arange(w).expand(h, w)
    rgb = torch.stack([x * 4, torch.full((h, w), 100), torch.arange(h)[:, None].expand(h, w)])
    return {
        "rgb": rgb.to(torch.uint8),
        "thermal": (x * 4).to(torch.uint8)[None],
        "label": (x // 8 % classes).to(torch.uint8),
    }


def random_sample(h: int = 40, w: int = 56, classes: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    label = torch.randint(0, classes, (h // 4 + 1, w // 4 + 1), generator=g, dtype=torch.uint8)
    label = label.repeat_interleave(4, 0).repeat_interleave(4, 1)[:h, :w]
    return {"rgb": rgb, "thermal": rgb[:1].clone(), "label": label}


def test_authors_normalisation_numbers():
    sample = {
        "rgb": torch.tensor([255, 0, 128], dtype=torch.uint8)[:, None, None],
        "thermal": torch.tensor([[[51]]], dtype=torch.uint8),
        "label": torch.zeros(1, 1, dtype=torch.uint8),
    }
    out = EvalTransform(eval_size=None)(sample)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(out["rgb"].flatten(), torch.tensor(expected), atol=1e-6)
    assert out["thermal"].shape == (3, 1, 1)
    assert torch.allclose(out["thermal"].flatten(), torch.full((3,), 0.2), atol=1e-6)


def test_computed_normalisation_from_meta():
    meta = {
        "normalisation": {
            "computed": {
                "rgb_mean": [0.5, 0.4, 0.3],
                "rgb_std": [0.1, 0.2, 0.25],
                "thermal_mean": [0.2] * 3,
                "thermal_std": [0.5] * 3,
            }
        }
    }
    norm = Normalisation.from_meta(meta, "computed")
    rgb, thermal = norm(
        torch.full((3, 1, 1), 102, dtype=torch.uint8), torch.full((1, 1, 1), 204, dtype=torch.uint8)
    )
    assert torch.allclose(rgb.flatten(), torch.tensor([(0.4 - 0.5) / 0.1, 0.0, (0.4 - 0.3) / 0.25]))
    assert torch.allclose(thermal.flatten(), torch.full((3,), (0.8 - 0.2) / 0.5))
    assert Normalisation.from_meta({}, "authors") == AUTH
    per_channel = Normalisation(AUTH.rgb_mean, AUTH.rgb_std, (0.0, 0.5, 1.0), (1.0, 0.5, 0.25))
    _, thermal = per_channel(
        torch.zeros(3, 1, 1, dtype=torch.uint8), torch.full((1, 1, 1), 255, dtype=torch.uint8)
    )
    assert torch.allclose(thermal.flatten(), torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(DataError, match="data/x/meta.json: no 'normalisation.computed'"):
        Normalisation.from_meta({}, "computed", source="data/x/meta.json")
    with pytest.raises(DataError, match="not allowed"):
        Normalisation.from_meta(meta, "imagenet")


def test_eval_pads_without_resizing():
    sample = random_sample(40, 56)
    out = EvalTransform(eval_size=64)(sample)
    assert out["rgb"].shape == out["thermal"].shape == (3, 64, 64)
    assert out["label"].shape == (64, 64) and out["label"].dtype == torch.long
    assert out["rgb"].dtype == torch.float32 and (out["height"], out["width"]) == (40, 56)
    assert torch.equal(out["label"][:40, :56], sample["label"].long())  # untouched, not resized
    assert torch.allclose(raw_rgb(out)[:, :40, :56], sample["rgb"].float(), atol=1e-3)
    assert (out["label"][40:] == 255).all() and (out["label"][:, 56:] == 255).all()
    assert torch.allclose(raw_rgb(out)[:, 40:], torch.zeros(1), atol=1e-3)  # image padded 0
    assert (out["thermal"][:, :, 56:] == 0).all()


def test_eval_larger_than_eval_size_pads_to_multiple_of_32():
    out = EvalTransform(eval_size=48)(random_sample(40, 70))
    assert out["label"].shape == (48, 96)
    assert (out["height"], out["width"]) == (40, 70)


def test_eval_resize_option_keeps_labels_nearest():
    sample = random_sample(40, 56)
    out = EvalTransform(eval_size=112, resize=True)(sample)
    assert (out["height"], out["width"]) == (80, 112) and out["label"].shape == (112, 112)
    inner = out["label"][:80, :112]
    assert set(inner.unique().tolist()) <= set(sample["label"].unique().tolist())
    assert torch.equal(inner[::2, ::2], sample["label"].long())  # exact 2x nearest upsampling


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_flip_applied_identically(flip_p):
    sample = ramp_sample(32, 48)
    t = TrainTransform(crop_size=32, scale_range=(1.0, 1.0), flip_p=flip_p, jitter_p=0, blur_p=0)
    torch.manual_seed(0)
    out = t(sample)
    col = torch.round(raw_rgb(out)[0] / 4).long()  # the source column of every output pixel
    th_col = torch.round(out["thermal"][0] * 255 / 4).long()
    assert torch.equal(col, th_col)
    assert torch.equal(out["label"], col // 8 % 5)  # the label moved with the images
    step = col[:, 1:] - col[:, :-1]
    assert (step == (-1 if flip_p else 1)).all()
    assert torch.allclose(raw_rgb(out)[1], torch.full((32, 32), 100.0), atol=1e-3)


def test_random_scale_crop_pad_shared_and_labels_kept():
    sample = random_sample(40, 56)
    t = TrainTransform(crop_size=64, scale_range=(0.5, 2.0), jitter_p=0, blur_p=0)
    allowed = set(sample["label"].unique().tolist()) | {255}
    for seed in range(6):
        torch.manual_seed(seed)
        out = t(sample)
        assert out["rgb"].shape == out["thermal"].shape == (3, 64, 64)
        assert out["label"].shape == (64, 64) and out["label"].dtype == torch.long
        assert set(out["label"].unique().tolist()) <= allowed
        # thermal is RGB's first channel: any geometric mismatch would show here
        assert torch.allclose(raw_rgb(out)[0] / 255, out["thermal"][0], atol=1e-4)
        vh, vw = out["height"], out["width"]
        assert (out["label"][vh:] == 255).all() and (out["label"][:, vw:] == 255).all()
        assert (out["label"][:vh, :vw] != 255).all()


def test_small_image_is_padded_image_zero_label_255():
    sample = random_sample(20, 28)
    t = TrainTransform(crop_size=64, scale_range=(0.5, 0.5), flip_p=0, jitter_p=0, blur_p=0)
    out = t(sample)
    # the short side becomes 0.5 * 64 = 32: 20x28 -> 32x45, padded to 64x64
    assert (out["height"], out["width"]) == (32, 45)
    assert (out["label"][32:] == 255).all() and (out["label"][:, 45:] == 255).all()
    assert torch.allclose(raw_rgb(out)[:, 32:], torch.zeros(1), atol=1e-3)
    assert (out["thermal"][:, :, 45:] == 0).all()


def test_jitter_and_blur_touch_rgb_only():
    sample = random_sample(32, 32)
    base = TrainTransform(crop_size=32, scale_range=(1.0, 1.0), flip_p=0, jitter_p=0, blur_p=0)
    for kwargs in ({"jitter_p": 1.0}, {"blur_p": 1.0}):
        t = TrainTransform(crop_size=32, scale_range=(1.0, 1.0), flip_p=0, **kwargs)
        out, ref = t(sample), base(sample)
        assert torch.equal(out["thermal"], ref["thermal"])
        assert torch.equal(out["label"], ref["label"])
        assert not torch.allclose(out["rgb"], ref["rgb"])


def test_reproducible_under_manual_seed():
    sample = random_sample(40, 56)
    t = TrainTransform(crop_size=48, jitter_p=0.5, blur_p=0.5)

    def run(seed: int) -> dict:
        torch.manual_seed(seed)
        return t(sample)

    a, b, c = run(1), run(1), run(2)
    for key in ("rgb", "thermal", "label"):
        assert torch.equal(a[key], b[key])
    assert not all(torch.equal(a[k], c[k]) for k in ("rgb", "label"))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x = TrainTransform(crop_size=48)(sample, generator=g1)
    y = TrainTransform(crop_size=48)(sample, generator=g2)
    assert torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["label"], y["label"])


def test_mismatched_sizes_are_refused():
    sample = random_sample(40, 56)
    sample["label"] = sample["label"][:, :50]
    with pytest.raises(ValueError, match="sizes differ"):
        EvalTransform(eval_size=64)(sample)


def test_from_config_reads_data_section():
    from sartm.config import resolve

    cfg = resolve(dataset="pst900", preset="paper")
    train = TrainTransform.from_config(cfg.data, AUTH)
    ev = EvalTransform.from_config(cfg.data, AUTH)
    assert train.crop_size == 1280 and train.scale_range == (0.5, 2.0)
    assert (train.flip_p, train.jitter_p, train.blur_p) == (0.5, 0.2, 0.2)
    assert ev.eval_size == 1280 and ev.resize is False
