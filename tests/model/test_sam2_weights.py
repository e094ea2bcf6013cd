"""Official-format SAM2 checkpoints (made by sam2's own builder): reading, size, loading, errors."""

from __future__ import annotations

import pytest
import torch

from sartm.model.encoder import RGBTEncoder
from sartm.model.sam2_weights import (
    CheckpointError,
    LoadReport,
    compatible_backbones,
    detect_backbone,
    read_sam2_checkpoint,
    split_sam2_state,
)

T2, T21 = "configs/sam2/sam2_hiera_t.yaml", "configs/sam2.1/sam2.1_hiera_t.yaml"


def encoder(backbone: str = "sam2_hiera_t") -> RGBTEncoder:
    return RGBTEncoder(
        backbone=backbone,
        lora_rank=4,
        lora_alpha=4.0,
        lora_dropout=0.0,
        lora_sharing="per_modality",
    )


def test_size_and_family_are_detected(sam2_checkpoint):
    state2 = read_sam2_checkpoint(sam2_checkpoint(T2))
    state21 = read_sam2_checkpoint(sam2_checkpoint(T21))
    assert detect_backbone(state2) == "sam2_hiera_t"
    assert detect_backbone(state21) == "sam2.1_hiera_t"
    # The image encoder alone cannot tell SAM 2 from SAM 2.1: both are reported compatible.
    parts, _ = split_sam2_state(state21)
    assert compatible_backbones(parts["image_encoder"]) == ["sam2_hiera_t", "sam2.1_hiera_t"]
    assert detect_backbone(parts["image_encoder"]) == "sam2_hiera_t"
    micro = encoder("test_hiera_micro").base_state_dict()
    assert detect_backbone(micro) == "test_hiera_micro"


def test_official_checkpoint_loads_into_the_encoder_and_reproduces_sam2(sam2_checkpoint):
    from sam2.build_sam import build_sam2

    path = sam2_checkpoint(T2)
    state = read_sam2_checkpoint(path)
    parts, skipped = split_sam2_state(state)
    enc = encoder()
    report = skipped.merge(enc.load_sam2_state(parts["image_encoder"], source=str(path)))
    assert report.ok, report.format()
    n_encoder = sum(k.startswith("image_encoder.") for k in state)
    assert sorted(report.loaded) == sorted(k for k in state if k.startswith("image_encoder."))
    assert len(report.loaded) == n_encoder
    assert set(report.skipped) == {
        k
        for k in state
        if k.split(".")[0] not in {"image_encoder", "sam_mask_decoder", "sam_prompt_encoder"}
    }
    assert any(k.startswith("memory_attention.") for k in report.skipped)
    assert "OK" in report.format() and str(path) in report.format()

    # The adapted encoder (B = 0) gives what sam2's own model, loaded the official way, gives.
    sam = build_sam2(T2, ckpt_path=str(path), device="cpu", mode="eval")
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = enc(x, x)
        theirs = sam.image_encoder(x)["backbone_fpn"]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_of_another_size_is_refused_naming_both(sam2_checkpoint):
    state = read_sam2_checkpoint(sam2_checkpoint(T2))
    parts, _ = split_sam2_state(state)
    with pytest.raises(CheckpointError, match=r"t\.pt.*sam2_hiera_t.*this model is sam2_hiera_s"):
        encoder("sam2_hiera_s").load_sam2_state(
            parts["image_encoder"], source=str(sam2_checkpoint(T2))
        )
    micro = encoder("test_hiera_micro").base_state_dict()
    with pytest.raises(CheckpointError, match="test_hiera_micro.*this model is test_hiera_tiny"):
        encoder("test_hiera_tiny").load_sam2_state(micro)


def test_missing_and_unexpected_keys_are_reported():
    enc = encoder("test_hiera_micro")
    state = dict(enc.base_state_dict())
    dropped = "neck.convs.1.conv.bias"
    del state[dropped]
    state["trunk.extra_thing"] = torch.zeros(3)
    report = enc.load_sam2_state(state)
    assert not report.ok
    assert report.missing == ["image_encoder." + dropped]
    assert report.unexpected == ["image_encoder.trunk.extra_thing"]
    text = report.format()
    assert "NOT OK" in text and dropped in text and "trunk.extra_thing" in text


def test_load_copies_every_weight_including_the_split_qkv():
    src, dst = encoder("test_hiera_micro"), encoder("test_hiera_micro")
    with torch.no_grad():
        for p in src.image_encoder.parameters():
            p.add_(torch.randn_like(p))
    report = dst.load_sam2_state(
        {"image_encoder." + k: v for k, v in src.base_state_dict().items()}
    )
    assert report.ok
    for key, value in src.base_state_dict().items():
        assert torch.equal(value, dst.base_state_dict()[key]), key


def test_report_merge_resolves_keys_another_part_used():
    enc = LoadReport(
        loaded=["image_encoder.a"],
        unexpected=["sam_mask_decoder.x"],
        missing=["image_encoder.m"],
        source="f.pt",
    )
    dec = LoadReport(
        loaded=["sam_mask_decoder.x"],
        skipped={"sam_mask_decoder.iou": "unused"},
        unexpected=["memory_encoder.y"],
        notes=["fresh mask tokens"],
    )
    merged = enc.merge(dec)
    assert merged.loaded == ["image_encoder.a", "sam_mask_decoder.x"]
    assert merged.unexpected == ["memory_encoder.y"]
    assert merged.missing == ["image_encoder.m"] and not merged.ok
    assert merged.skipped == {"sam_mask_decoder.iou": "unused"}
    assert merged.source == "f.pt" and merged.notes == ["fresh mask tokens"]
    assert LoadReport(loaded=["a.b"]).ok


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.zeros(3), "holds a Tensor"),
        ({"state_dict": {"a": torch.zeros(1)}}, "no 'model' entry.*state_dict"),
        ({"model": {"image_encoder.a": 3}}, "not a state dict of named tensors"),
        ({"model": {"sam_mask_decoder.a": torch.zeros(1)}}, "no image_encoder"),
        ({"model": {"image_encoder.a": torch.tensor([float("nan")])}}, "NaN or infinite"),
    ],
)
def test_wrong_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: .*{message}"):
        read_sam2_checkpoint(path)


def test_truncated_empty_and_absent_files_are_clear_errors(tmp_path):
    whole = tmp_path / "whole.pt"
    state = {
        "image_encoder." + k: v for k, v in encoder("test_hiera_micro").base_state_dict().items()
    }
    torch.save({"model": state}, whole)
    data = whole.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "page.pt").write_text("<html>403 Forbidden</html>")
    for name in ("cut.pt", "empty.pt", "page.pt"):
        with pytest.raises(CheckpointError, match=rf"{name}: not a readable SAM2 checkpoint"):
            read_sam2_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no such SAM2 checkpoint"):
        read_sam2_checkpoint(tmp_path / "absent.pt")
    assert set(read_sam2_checkpoint(whole)) == set(state)


def test_unknown_sizes_and_non_sam2_states_are_refused():
    state = dict(encoder("test_hiera_micro").base_state_dict())
    state["trunk.patch_embed.proj.weight"] = torch.zeros(20, 3, 7, 7)
    with pytest.raises(CheckpointError, match="embed_dim 20.*matches no known size"):
        detect_backbone(state)
    with pytest.raises(CheckpointError, match="no SAM2 Hiera image encoder"):
        detect_backbone({"layer.weight": torch.zeros(2)})
