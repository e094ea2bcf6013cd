"""The assembled SARTM model: shapes for every size, training paths, the w = 0 rules, state."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights

from sartm import config as cfgmod
from sartm.model.backbones import BACKBONES
from sartm.model.sam2_weights import CheckpointError
from sartm.model.sartm import ModelError, build_model, parameter_counts

ROOT = Path(__file__).resolve().parents[2]
C = 5  # PST900's classes
TINY = [
    "model.backbone=test_hiera_micro",
    "model.checkpoint=null",
    "model.aux_channels=16",
    "model.lora_rank=2",
]


@pytest.fixture(scope="module")
def params():
    return cfgmod.load_params(ROOT / "params.yaml")


@pytest.fixture
def cfg_for(params):
    def make(*overrides: str, preset: str = "ci") -> cfgmod.Config:
        return cfgmod.resolve(params, dataset="pst900", preset=preset, overrides=overrides)

    return make


def _batch(b: int = 2, size: tuple[int, int] = (64, 96), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randn(b, 3, *size, generator=g)
    thermal = torch.randn(b, 3, *size, generator=g)
    label = torch.randint(0, C, (b, *size), generator=g)
    label[:, :4] = 255  # some padding
    return rgb, thermal, label


def _text(d: int = 12) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(C, d, generator=torch.Generator().manual_seed(3)), dim=1
    )


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_gives_the_contract_shapes(cfg_for, backbone):
    """Construct-only for the real sizes: parameters and activations live on the meta device."""
    cfg = cfg_for(f"model.backbone={backbone}", "loss.w3=0", preset="paper")
    with init_empty_weights():
        model = build_model(cfg, C)
    model = model.to("meta")
    d = model.encoder.d_model
    if not backbone.startswith("test_"):
        assert d == 256
        assert model.fusion.channels == (32, 64, 256)
    rgb = torch.zeros(2, 3, 256, 384, device="meta")
    with torch.no_grad():
        levels = model.fused_features(rgb, rgb)
        out = model(rgb, rgb)
    assert [tuple(x.shape) for x in levels] == [
        (2, d // 8, 64, 96),
        (2, d // 4, 32, 48),
        (2, d, 16, 24),
    ]
    assert tuple(out["s0"].shape) == tuple(out["s1"].shape) == (2, C, 256, 384)
    assert tuple(out["sfm"].shape) == (2, d, 16, 24)
    counts = parameter_counts(model)
    assert counts["encoder (frozen)"]["trainable"] == 0
    assert counts["lora"]["trainable"] == counts["lora"]["total"] > 0
    parts = ("lora", "encoder (frozen)", "fusion", "decoder", "aux_head")
    assert sum(counts[p]["total"] for p in parts) == counts["all"]["total"]


@pytest.mark.parametrize("head", ["fpn", "deeplab", "segformer", "none"])
def test_forward_backward_reaches_exactly_the_trainable_parts(cfg_for, head):
    w1 = "0" if head == "none" else "0.008"
    cfg = cfg_for(*TINY, f"model.aux_head={head}", f"loss.w1={w1}")
    model = build_model(cfg, C, _text())
    rgb, thermal, label = _batch()
    out = model(rgb, thermal)
    assert set(out) == ({"s0", "sfm"} if head == "none" else {"s0", "s1", "sfm"})
    assert out["s0"].shape == (2, C, 64, 96)
    loss, terms = model.compute_loss(out, label)
    expected = {"ce_s0", "l_cr", "l_se"} | ({"ce_s1"} if head != "none" else set())
    assert set(terms) == expected
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("encoder."):
            # Trunk and neck frozen; only the q/v LoRA adapters train.
            assert p.requires_grad == (".lora_" in name), name
            if ".lora_" in name:
                assert ".attn.qkv.q." in name or ".attn.qkv.v." in name, name
        elif name.startswith("decoder.prompt."):  # SAM2's prompt embeddings stay frozen
            assert not p.requires_grad, name
        else:
            assert p.requires_grad, name
        if p.requires_grad:
            assert p.grad is not None, f"{name} gets no gradient"
        else:
            assert p.grad is None, name
    lora_b = [p.grad for n, p in model.named_parameters() if ".lora_B." in n]
    assert any(float(g.abs().sum()) > 0 for g in lora_b)
    assert (model.aux_head is None) == (head == "none")


def test_unused_parts_change_nothing_in_the_state(cfg_for):
    """Configurations that differ only in what a zero weight switches off are the same model."""

    def signature(model):
        return list(model.state_dict()), parameter_counts(model)

    no_head = build_model(cfg_for(*TINY, "model.aux_head=none"), C, _text())
    head_w1_zero = build_model(
        cfg_for(*TINY, "model.aux_head=deeplab", "model.aux_channels=64", "loss.w1=0"), C, _text()
    )
    assert signature(no_head) == signature(head_w1_zero)
    assert no_head.aux_head is None

    no_text = build_model(cfg_for(*TINY, "loss.w3=0"), C)
    ignored_text = build_model(cfg_for(*TINY, "loss.w3=0"), C, _text())
    assert signature(no_text) == signature(ignored_text)
    assert not hasattr(ignored_text.criterion, "text_embeddings")

    ce_only = build_model(cfg_for(*TINY, "loss.w2=0", "loss.w3=0"), C)
    assert "criterion.global_prototypes" not in ce_only.state_dict()
    assert "criterion.global_prototypes" in ignored_text.trainable_state_dict()


def test_text_embeddings_are_required_exactly_when_w3_is_on(cfg_for):
    with pytest.raises(ModelError, match=r"loss.w3 = 100 needs the text embeddings"):
        build_model(cfg_for(*TINY), C)
    with pytest.raises(ModelError, match=r"expected \(5, D\)"):
        build_model(cfg_for(*TINY), C, torch.zeros(C + 1, 8))


def test_build_is_reproducible_and_leaves_the_callers_rng_alone(cfg_for):
    cfg = cfg_for(*TINY, "loss.w3=0")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(cfg, C)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_model(cfg, C)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    other_seed = build_model(cfg.with_overrides(["train.seed=1"]), C)
    frozen = "encoder.image_encoder.trunk.patch_embed.proj.weight"
    assert not torch.equal(a.state_dict()[frozen], other_seed.state_dict()[frozen])


def test_trainable_state_round_trips_into_a_fresh_model(cfg_for):
    cfg = cfg_for(*TINY, "loss.w3=0")
    model = build_model(cfg, C)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rgb, thermal, label = _batch()
    for _ in range(2):
        optimiser.zero_grad()
        loss, _ = model.compute_loss(model(rgb, thermal), label)
        loss.backward()
        optimiser.step()
    state = model.trainable_state_dict()
    assert not any(k.startswith("encoder.") and ".lora_" not in k for k in state)
    assert "decoder.prompt.pe_layer.positional_encoding_gaussian_matrix" not in state
    assert "criterion.global_prototypes" in state
    assert float(state["criterion.global_prototypes"].abs().sum()) > 0  # EMA moved
    assert any(k.endswith("running_mean") for k in state)  # BatchNorm statistics

    fresh = build_model(cfg, C)
    fresh.load_trainable_state_dict(state)
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(rgb, thermal)["s0"], model(rgb, thermal)["s0"])

    broken = dict(state)
    del broken["criterion.global_prototypes"]
    broken["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"global_prototypes.*decoder.extra.weight"):
        fresh.load_trainable_state_dict(broken)


def test_predict_modes(cfg_for):
    rgb, thermal, _ = _batch()
    s0_model = build_model(cfg_for(*TINY, "loss.w3=0"), C).eval()
    with torch.no_grad():
        out = s0_model(rgb, thermal)
    torch.testing.assert_close(s0_model.predict(rgb, thermal), out["s0"])

    both = build_model(cfg_for(*TINY, "loss.w3=0", "model.predict=s0+s1"), C).eval()
    with torch.no_grad():
        out = both(rgb, thermal)
        scores = both.predict(rgb, thermal)
    mean = 0.5 * (out["s0"].softmax(1) + out["s1"].softmax(1))
    torch.testing.assert_close(scores.softmax(1), mean)
    assert scores.shape == (2, C, 64, 96)


def test_similarity_matrices_cover_the_classes_present(cfg_for):
    model = build_model(cfg_for(*TINY), C, _text()).eval()
    rgb, thermal, label = _batch()
    label[label == 3] = 0  # class 3 absent
    with torch.no_grad():
        out = model(rgb, thermal)
    visual, text, present = model.similarity_matrices(out, label)
    assert present.tolist() == [0, 1, 2, 4]
    assert visual.shape == text.shape == (4, 4)
    expected = (_text()[[0, 1, 2, 4]] @ _text()[[0, 1, 2, 4]].T).numpy()
    assert abs(text - expected).max() < 1e-5


def test_channels_last_option(cfg_for):
    model = build_model(cfg_for(*TINY, "loss.w3=0", "train.channels_last=true"), C)
    conv = model.fusion.levels[0].fuse.channel_embed.residual.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    rgb, thermal, _ = _batch()
    assert model(rgb, thermal)["s0"].shape == (2, C, 64, 96)


def test_official_checkpoint_loads_into_encoder_and_decoder(cfg_for, sam2_checkpoint):
    path = sam2_checkpoint("configs/sam2/sam2_hiera_t.yaml")
    official = torch.load(path, map_location="cpu", weights_only=True)["model"]
    model = build_model(cfg_for("model.backbone=sam2_hiera_t", "loss.w3=0"), C)
    tokens = model.decoder.mask_tokens.weight.detach().clone()
    report = model.load_sam2_checkpoint(path)
    assert report.ok, report.format()
    assert report.source == str(path)
    parts = {k.split(".", 1)[0] for k in report.loaded}
    assert parts == {"image_encoder", "sam_mask_decoder", "sam_prompt_encoder"}
    decoder_loaded = [k for k in report.loaded if k.startswith("sam_mask_decoder.")]
    assert len(decoder_loaded) == len(model.decoder.state_dict()) - 1 - 6 * C - 3
    # Everything in the file is accounted for: loaded, or skipped with a reason.
    assert set(report.loaded) | set(report.skipped) == set(official)
    skipped = report.skipped
    assert "video-memory" in skipped["memory_attention.layers.0.self_attn.q_proj.weight"]
    assert "4 mask tokens" in skipped["sam_mask_decoder.mask_tokens.weight"]
    assert "IoU" in skipped["sam_mask_decoder.iou_token.weight"]
    assert "object-score" in skipped["sam_mask_decoder.obj_score_token.weight"]
    state = model.state_dict()
    for ours, theirs in [
        (
            "decoder.transformer.layers.0.self_attn.q_proj.weight",
            "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
        ),
        ("decoder.conv_s1.weight", "sam_mask_decoder.conv_s1.weight"),
        ("decoder.prompt.no_mask_embed.weight", "sam_prompt_encoder.no_mask_embed.weight"),
        ("decoder.prompt.not_a_point_embed.weight", "sam_prompt_encoder.not_a_point_embed.weight"),
        (
            "encoder.image_encoder.neck.convs.0.conv.weight",
            "image_encoder.neck.convs.0.conv.weight",
        ),
    ]:
        assert torch.equal(state[ours], official[theirs]), ours
    assert torch.equal(model.decoder.mask_tokens.weight, tokens)
    assert "NOT OK" not in report.format()


def test_checkpoint_of_another_size_is_refused(cfg_for, sam2_checkpoint):
    path = sam2_checkpoint("configs/sam2/sam2_hiera_t.yaml")
    model = build_model(cfg_for("model.backbone=sam2_hiera_s", "loss.w3=0"), C)
    with pytest.raises(CheckpointError, match=r"sam2_hiera_t.*sam2_hiera_s"):
        model.load_sam2_checkpoint(path)
