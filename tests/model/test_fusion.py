"""CMX fusion (FRM + FFM) at SARTM's three levels: shapes, rectification, cross attention."""

from __future__ import annotations

import pytest
import torch

from sartm.model.fusion import (
    FeatureRectify,
    GlobalContextCrossAttention,
    LevelFusion,
    RGBTFusion,
)


def _levels(d: int, b: int = 2, h: int = 4, w: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(b, d // 8, 4 * h, 4 * w, generator=g),
        torch.randn(b, d // 4, 2 * h, 2 * w, generator=g),
        torch.randn(b, d, h, w, generator=g),
    ]


@pytest.mark.parametrize("d", [64, 256])
def test_three_levels_keep_shapes_and_use_authors_head_counts(d):
    fusion = RGBTFusion(channels=(d // 8, d // 4, d))
    out = fusion(_levels(d, seed=0), _levels(d, seed=1))
    assert [tuple(o.shape) for o in out] == [
        (2, d // 8, 16, 24),
        (2, d // 4, 8, 12),
        (2, d, 4, 6),
    ]
    heads = [lvl.fuse.cross.cross_attn.num_heads for lvl in fusion.levels]
    assert heads == [1, 2, 4]


def test_head_count_falls_back_to_a_divisor_for_tiny_dims():
    attn = GlobalContextCrossAttention(dim=6, num_heads=4)
    assert attn.num_heads == 3


def test_level_count_mismatch_is_refused():
    fusion = RGBTFusion(channels=(8, 16, 64))
    with pytest.raises(ValueError, match="3 levels"):
        fusion(_levels(64)[:2], _levels(64)[:2])


def test_rectify_adds_only_the_other_modality():
    frm = FeatureRectify(dim=16).requires_grad_(False)
    x_rgb = torch.randn(2, 16, 5, 7)
    zeros = torch.zeros_like(x_rgb)
    rgb, thermal = frm(x_rgb, zeros)
    # A blank thermal map adds nothing to RGB; thermal receives the weighted RGB features.
    torch.testing.assert_close(rgb, x_rgb)
    c_rgb, _ = frm.channel(x_rgb, zeros)
    s_rgb, _ = frm.spatial(x_rgb, zeros)
    torch.testing.assert_close(thermal, (0.5 * c_rgb + 0.5 * s_rgb) * x_rgb)
    assert c_rgb.shape == (2, 16, 1, 1) and s_rgb.shape == (2, 1, 5, 7)
    assert float(c_rgb.min()) > 0 and float(c_rgb.max()) < 1


def _reference_cross_attention(attn, x_rgb, x_thermal):
    """Straight from the description: per head, context = softmax_over_key_channels(K^T V * s),
    the other modality's tokens read it."""
    heads, c = attn.num_heads, x_rgb.shape[-1]
    ch = c // heads

    def context(x, kv):
        k, v = kv(x).chunk(2, dim=-1)
        out = []
        for i in range(heads):
            ki, vi = k[..., i * ch : (i + 1) * ch], v[..., i * ch : (i + 1) * ch]
            out.append(torch.softmax(torch.einsum("bnk,bnv->bkv", ki, vi) * ch**-0.5, dim=1))
        return out

    def read(x, ctx):
        return torch.cat([x[..., i * ch : (i + 1) * ch] @ ctx[i] for i in range(heads)], dim=-1)

    return read(x_rgb, context(x_thermal, attn.kv_thermal)), read(
        x_thermal, context(x_rgb, attn.kv_rgb)
    )


def test_cross_attention_matches_a_plain_reference():
    torch.manual_seed(0)
    attn = GlobalContextCrossAttention(dim=16, num_heads=4)
    x_rgb, x_thermal = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    got = attn(x_rgb, x_thermal)
    want = _reference_cross_attention(attn, x_rgb, x_thermal)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_cross_attention_is_pixel_order_equivariant_and_crosses_modalities():
    torch.manual_seed(0)
    attn = GlobalContextCrossAttention(dim=8, num_heads=2)
    x_rgb = torch.randn(1, 20, 8, requires_grad=True)
    x_thermal = torch.randn(1, 20, 8, requires_grad=True)
    out_rgb, _ = attn(x_rgb, x_thermal)
    perm = torch.randperm(20)
    perm_rgb, _ = attn(x_rgb[:, perm], x_thermal[:, perm])
    torch.testing.assert_close(perm_rgb, out_rgb[:, perm])  # a global context, no positions
    out_rgb.sum().backward()
    assert x_thermal.grad is not None and float(x_thermal.grad.abs().sum()) > 0


def test_level_fusion_trains_and_reaches_both_inputs():
    torch.manual_seed(0)
    level = LevelFusion(dim=16, num_heads=2)
    x_rgb = torch.randn(2, 16, 6, 5, requires_grad=True)
    x_thermal = torch.randn(2, 16, 6, 5, requires_grad=True)
    out = level(x_rgb, x_thermal)
    assert out.shape == (2, 16, 6, 5)
    out.square().mean().backward()
    assert float(x_rgb.grad.abs().sum()) > 0 and float(x_thermal.grad.abs().sum()) > 0
    no_grad = [n for n, p in level.named_parameters() if p.grad is None]
    assert no_grad == []
