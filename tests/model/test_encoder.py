"""The RGB-T encoder: sam2's modules, frozen, LoRA on q and v only, per-modality adapters."""

from __future__ import annotations

import json
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from sartm.model.backbones import BACKBONES, BackboneError, build_image_encoder
from sartm.model.encoder import EncoderInputError, RGBTEncoder
from sartm.model.lora import AdapterError, QKVProjection

MICRO = "test_hiera_micro"
REAL = [name for name in BACKBONES if not name.startswith("test_")]


def make(sharing: str = "per_modality", *, rank: int = 4, backbone: str = MICRO, seed: int = 0):
    torch.manual_seed(seed)
    return RGBTEncoder(
        backbone=backbone,
        lora_rank=rank,
        lora_alpha=2.0 * rank,
        lora_dropout=0.0,
        lora_sharing=sharing,
    )


def randomise_lora(encoder: RGBTEncoder, seed: int = 1) -> None:
    """Non-zero B so that the adapters actually change q and v (B starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in encoder.lora_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def reference(encoder: RGBTEncoder):
    """sam2's plain ImageEncoder carrying the adapted encoder's frozen weights (strict load)."""
    ref = build_image_encoder(encoder.backbone)
    ref.load_state_dict(encoder.base_state_dict(), strict=True)
    return ref.eval()


def images(b: int = 2, side: int = 128, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, side, side, generator=gen), torch.randn(
        b, 3, side, side, generator=gen
    )


@pytest.mark.parametrize("backbone", ["test_hiera_micro", "test_hiera_tiny"])
def test_tiny_sizes_run_forward_backward_fast(backbone):
    enc = make(backbone=backbone)
    rgb, th = images(2, 128)
    best = float("inf")
    for _ in range(5):  # best of 5: the machine may be busy with other work
        start = time.perf_counter()
        feats_rgb, feats_th = enc(rgb, th)
        sum(f.square().mean() for f in feats_rgb + feats_th).backward()
        best = min(best, time.perf_counter() - start)
    d = enc.d_model
    assert d % 8 == 0
    for feats in (feats_rgb, feats_th):
        assert [tuple(f.shape) for f in feats] == [(2, d, 32, 32), (2, d, 16, 16), (2, d, 8, 8)]
    assert best < 1.0, f"forward+backward took {best:.2f} s"


@pytest.mark.parametrize("sharing", ["per_modality", "shared"])
def test_zero_b_reproduces_the_frozen_sam2_encoder(sharing):
    enc = make(sharing)
    ref = reference(enc)
    rgb, th = images()
    feats_rgb, feats_th = enc(rgb, th)
    with torch.no_grad():
        expected_rgb = ref(rgb)["backbone_fpn"]
        expected_th = ref(th)["backbone_fpn"]
    assert len(expected_rgb) == 3  # scalp 1: the stride-32 level is dropped
    for got, want in zip(feats_rgb + feats_th, expected_rgb + expected_th):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sharing, adapters", [("per_modality", 2), ("shared", 1)])
def test_only_lora_on_q_and_v_is_trainable_with_the_formula_count(sharing, adapters):
    rank = 4
    enc = make(sharing, rank=rank)
    trainable = {n: p for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all(".attn.qkv.q." in n or ".attn.qkv.v." in n for n in trainable)
    assert not any(p.requires_grad for n, p in enc.named_parameters() if "neck" in n)
    blocks = list(enc.image_encoder.trunk.blocks)
    dims = [(b.attn.dim, b.attn.dim_out) for b in blocks]
    assert any(i != o for i, o in dims)  # stage changes: dim_in != dim_out there
    per_block = [rank * (i + o) * 2 for i, o in dims]  # q and v
    assert sum(p.numel() for p in trainable.values()) == sum(per_block) * adapters


def test_training_moves_only_lora_and_never_the_key_projection():
    enc = make("per_modality")
    frozen = {k: v.clone() for k, v in enc.base_state_dict().items()}
    lora_before = [p.clone() for p in enc.lora_parameters()]
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    rgb, th = images()
    for _ in range(3):
        opt.zero_grad()
        feats_rgb, feats_th = enc(rgb, th)
        loss = sum(f.square().mean() for f in feats_rgb + feats_th)
        loss.backward()
        assert all(p.grad is None for p in enc.parameters() if not p.requires_grad)
        assert all(p.grad is not None for p in enc.lora_parameters())
        opt.step()
    after = enc.base_state_dict()
    assert frozen.keys() == after.keys()
    for key, value in frozen.items():
        assert torch.equal(value, after[key]), key
    assert all(not torch.equal(a, b) for a, b in zip(lora_before, enc.lora_parameters()))

    # Every block: the effective k output is the frozen one; q and v have moved.
    enc.routing.groups = ("rgb", "thermal")
    for i, block in enumerate(enc.image_encoder.trunk.blocks):
        qkv = block.attn.qkv
        assert isinstance(qkv, QKVProjection)
        w0, b0 = (
            frozen[f"trunk.blocks.{i}.attn.qkv.weight"],
            frozen[f"trunk.blocks.{i}.attn.qkv.bias"],
        )
        x = torch.randn(4, 3, 3, qkv.dim_in)
        with torch.no_grad():
            out, base = qkv(x), F.linear(x, w0, b0)
        d = qkv.dim_out
        torch.testing.assert_close(out[..., d : 2 * d], base[..., d : 2 * d], rtol=0, atol=0)
        assert not torch.allclose(out[..., :d], base[..., :d])
        assert not torch.allclose(out[..., 2 * d :], base[..., 2 * d :])
    enc.routing.groups = ()


def peft_twin(encoder: RGBTEncoder, *, seed: int | None = None):
    """The same image encoder with peft's own LoRA layers injected (as sartm did before it wrote
    its own): built from `seed` like `make`, or carrying `encoder`'s weights (strict load)."""
    from peft import LoraConfig, inject_adapter_in_model

    from sartm.model.lora import TARGET_MODULES, AdapterRouting, split_qkv

    s = encoder.lora_settings
    if seed is not None:
        torch.manual_seed(seed)
    twin = build_image_encoder(encoder.backbone)
    split_qkv(twin, AdapterRouting())
    config = LoraConfig(
        r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=TARGET_MODULES
    )
    for name in encoder.adapter_names:
        with warnings.catch_warnings():  # a second adapter is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, twin, adapter_name=name)
    if seed is None:
        twin.load_state_dict(encoder.image_encoder.state_dict(), strict=True)
    return twin


@pytest.mark.parametrize("sharing", ["per_modality", "shared"])
def test_lora_layers_have_pefts_names_initialisation_and_scaling(sharing):
    """Same seed, same parameters as peft's injection: every name, every value (B = 0, A drawn in
    peft's order), and peft's scaling alpha / r."""
    from peft.tuners.lora import LoraLayer

    from sartm.model.lora import LoRALinear

    enc = make(sharing, rank=3, seed=5)
    twin = peft_twin(enc, seed=5)
    mine, theirs = enc.image_encoder.state_dict(), twin.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    assert any(".lora_A." in k and mine[k].abs().sum() > 0 for k in mine)
    assert all(not mine[k].any() for k in mine if ".lora_B." in k)
    peft_scaling = [m.scaling for m in twin.modules() if isinstance(m, LoraLayer)]
    own_scaling = [m.scaling for m in enc.modules() if isinstance(m, LoRALinear)]
    assert own_scaling == peft_scaling and own_scaling[0] == {n: 2.0 for n in enc.adapter_names}


@pytest.mark.parametrize("sharing", ["per_modality", "shared"])
def test_fused_update_equals_pefts_own_layer_forward(sharing):
    """Each part of the batch gets exactly what peft's LoRA layer gives with that adapter alone
    (scaling, A then B), in the q and v columns; k is the frozen sub-layer's output."""
    enc = make(sharing, rank=3)
    randomise_lora(enc)
    twin = peft_twin(enc)
    groups = enc.adapter_names
    enc.routing.groups = groups
    try:
        for block, twin_block in zip(enc.image_encoder.trunk.blocks, twin.trunk.blocks):
            qkv, ref = block.attn.qkv, twin_block.attn.qkv
            x = torch.randn(2 * len(groups), 4, 4, qkv.dim_in)
            with torch.no_grad():
                out = qkv(x)
            d, n = qkv.dim_out, 2
            for i, adapter in enumerate(groups):
                part = slice(i * n, (i + 1) * n)
                for layer in (ref.q, ref.v):
                    layer.set_adapter(adapter)
                with torch.no_grad():
                    want_q, want_k, want_v = ref.q(x[part]), ref.k(x[part]), ref.v(x[part])
                torch.testing.assert_close(out[part, ..., :d], want_q, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(out[part, ..., d : 2 * d], want_k, rtol=0, atol=1e-6)
                torch.testing.assert_close(out[part, ..., 2 * d :], want_v, rtol=1e-5, atol=1e-5)
    finally:
        enc.routing.groups = ()


def test_per_modality_adapters_route_each_half_of_the_joint_batch():
    enc = make("per_modality")
    randomise_lora(enc)
    rgb, th = images(b=2)
    with torch.no_grad():
        joint_rgb, joint_th = enc(rgb, th)
        alone_rgb = enc.encode(rgb, adapter="rgb")
        alone_th = enc.encode(th, adapter="thermal")
        crossed = enc.encode(th, adapter="rgb")
    for a, b in zip(joint_rgb + joint_th, alone_rgb + alone_th):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(crossed[0], joint_th[0], atol=1e-3)


def test_shared_adapter_is_the_same_for_both_modalities():
    enc = make("shared")
    randomise_lora(enc)
    rgb, _ = images(b=2)
    with torch.no_grad():
        a, b = enc(rgb, rgb.clone())
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert enc.adapter_names == ("shared",)


@pytest.mark.parametrize("sharing", ["per_modality", "shared"])
def test_merged_lora_matches_unmerged_and_follows_updates(sharing):
    enc = make(sharing).eval()
    randomise_lora(enc)
    rgb, th = images()
    state_before = {k: v.clone() for k, v in enc.state_dict().items()}
    with torch.no_grad():
        unmerged = enc(rgb, th)
        enc.merge_lora()
        merged = enc(rgb, th)
    for a, b in zip(unmerged[0] + unmerged[1], merged[0] + merged[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # Merging leaves the weights alone: a saved state dict still means base + adapters.
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in state_before.items())
    # An in-place update (optimiser step, state-dict load) refreshes the merged weights.
    with torch.no_grad():
        for p in enc.lora_parameters():
            p.mul_(-1.5)
        merged2 = enc(rgb, th)
        enc.unmerge_lora()
        unmerged2 = enc(rgb, th)
    for a, b in zip(unmerged2[0] + unmerged2[1], merged2[0] + merged2[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(merged2[0][0], merged[0][0], atol=1e-3)


def test_merged_flag_is_ignored_while_training():
    enc = make("per_modality")
    randomise_lora(enc)
    enc.merge_lora()
    enc.train()
    rgb, th = images()
    feats_rgb, _ = enc(rgb, th)
    sum(f.mean() for f in feats_rgb).backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if ".lora_B.rgb" in n)


@pytest.mark.parametrize("sharing", ["per_modality", "shared"])
def test_adapters_round_trip_in_peft_format(tmp_path, sharing):
    enc = make(sharing, seed=0)
    randomise_lora(enc)
    folders = enc.save_adapters(tmp_path / "adapters")
    assert [f.name for f in folders] == list(enc.adapter_names)
    for folder in folders:
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
        weights = load_file(folder / "adapter_model.safetensors")
        assert all(k.startswith("base_model.model.trunk.blocks.") for k in weights)
        assert not any(f".{folder.name}." in k for k in weights)  # peft drops adapter names
        assert len(weights) == 4 * len(enc.image_encoder.trunk.blocks)  # q, v x A, B

    other = make(sharing, seed=1)
    rgb, th = images()
    with torch.no_grad():
        assert not torch.allclose(other(rgb, th)[0][0], enc(rgb, th)[0][0], atol=1e-4)
        other.load_adapters(tmp_path / "adapters")
        other.load_sam2_state(enc.base_state_dict())
        for a, b in zip(other(rgb, th)[1], enc(rgb, th)[1]):
            torch.testing.assert_close(a, b)


def test_adapter_files_are_readable_by_peft_itself(tmp_path):
    from peft import PeftModel

    from sartm.model.lora import AdapterRouting, split_qkv

    enc = make("per_modality")
    randomise_lora(enc)
    enc.save_adapters(tmp_path)
    plain = build_image_encoder(MICRO)
    split_qkv(plain, AdapterRouting())
    peft_model = PeftModel.from_pretrained(plain, tmp_path / "thermal", adapter_name="thermal")
    mine = dict(enc.image_encoder.named_parameters())
    for name, param in peft_model.named_parameters():
        if ".lora_" in name:
            torch.testing.assert_close(param, mine[name.removeprefix("base_model.model.")])


def test_adapters_that_do_not_fit_are_refused(tmp_path):
    make("per_modality", rank=4).save_adapters(tmp_path / "r4")
    with pytest.raises(AdapterError, match=r"rgb.*adapter_config\.json: r is 4"):
        make("per_modality", rank=8).load_adapters(tmp_path / "r4")
    with pytest.raises(AdapterError, match="no adapter 'shared'.*rgb, thermal"):
        make("shared", rank=4).load_adapters(tmp_path / "r4")
    make("per_modality", rank=4, backbone="test_hiera_tiny").save_adapters(tmp_path / "tiny")
    with pytest.raises(AdapterError, match="shape"):
        make("per_modality", rank=4).load_adapters(tmp_path / "tiny")


def test_inputs_are_checked():
    enc = make()
    rgb, th = images(2, 128)
    with pytest.raises(EncoderInputError, match="multiples of 32"):
        enc(rgb[..., :120, :120], th[..., :120, :120])
    with pytest.raises(EncoderInputError, match="differ"):
        enc(rgb, th[:1])
    with pytest.raises(EncoderInputError, match=r"\(B, 3, H, W\)"):
        enc(rgb[:, :1], th[:, :1])
    with pytest.raises(BackboneError, match="unknown backbone 'sam3'"):
        RGBTEncoder(
            backbone="sam3", lora_rank=4, lora_alpha=4, lora_dropout=0, lora_sharing="shared"
        )
    with pytest.raises(ValueError, match="lora_sharing"):
        RGBTEncoder(backbone=MICRO, lora_rank=4, lora_alpha=4, lora_dropout=0, lora_sharing="x")


def test_schema_backbones_are_exactly_the_known_ones():
    from sartm.config import schema

    assert schema()["$defs"]["model"]["properties"]["backbone"]["enum"] == list(BACKBONES)


@pytest.mark.parametrize("backbone", REAL)
def test_every_real_size_matches_sam2s_own_config(backbone):
    """Built on the meta device (no memory, no compute): the frozen weights have exactly the
    names and shapes of the image encoder that hydra instantiates from sam2's packaged config,
    and the outputs have the contract's shapes."""
    from accelerate import init_empty_weights
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from sartm.model.backbones import SAM2_CONFIGS

    spec = BACKBONES[backbone]
    node = OmegaConf.load(SAM2_CONFIGS.parent / spec.config).model.image_encoder
    with init_empty_weights():
        official = instantiate(node)
        enc = RGBTEncoder(
            backbone=backbone,
            lora_rank=16,
            lora_alpha=16,
            lora_dropout=0.0,
            lora_sharing="per_modality",
        )
    want = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in enc.base_state_dict().items()}
    assert got == want
    assert enc.d_model == 256
    dims = [(b.attn.dim, b.attn.dim_out) for b in official.trunk.blocks]
    lora = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert lora == 2 * sum(16 * (i + o) * 2 for i, o in dims)
    meta = torch.empty(1, 3, 512, 512, device="meta")
    feats_rgb, feats_th = enc(meta, meta)
    assert [tuple(f.shape) for f in feats_rgb] == [
        (1, 256, 128, 128),
        (1, 256, 64, 64),
        (1, 256, 32, 32),
    ]


def test_every_rank_run_has_lora_scaling_one():
    """The paper's dQ = W_a W_b has no scaling: alpha / r (peft's) must be 1 at every rank of the
    run list (Table IV), in every preset, and alpha stays settable."""
    from sartm import config as cfgmod
    from sartm.model.lora import LoRALinear

    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    jobs = [c for preset in params["presets"] for c in cfgmod.pipeline_runs(params, preset)]
    ranks = {(c.model.lora_rank, c.model.lora_alpha) for c in jobs}
    assert {r for r, _ in ranks} >= {4, 8, 16, 32, 64}
    for rank, alpha in sorted(ranks):
        encoder = RGBTEncoder(
            backbone=MICRO, lora_rank=rank, lora_alpha=alpha, lora_dropout=0.0,
            lora_sharing="per_modality",
        )  # fmt: skip
        scalings = {
            s for m in encoder.modules() if isinstance(m, LoRALinear) for s in m.scaling.values()
        }
        assert scalings == {1.0}, (rank, alpha, scalings)
    explicit = cfgmod.resolve(
        params, dataset="pst900", run="rank4", overrides=["model.lora_alpha=16"]
    )
    assert (
        explicit.model.lora_alpha == 16
        and explicit.hash() != cfgmod.resolve(params, dataset="pst900", run="rank4").hash()
    )
