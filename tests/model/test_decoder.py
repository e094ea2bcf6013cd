"""Path S0: the prompt-free, class-token SAM2 mask decoder."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.sam.transformer import TwoWayTransformer

from sartm.model.decoder import ClassTokenMaskDecoder, build_decoder

D, C = 64, 5


def _inputs(b: int = 2, h: int = 4, w: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, D, h, w, generator=g),
        torch.randn(b, D // 8, 4 * h, 4 * w, generator=g),
        torch.randn(b, D // 4, 2 * h, 2 * w, generator=g),
    )


def test_one_logit_map_per_class_at_stride_4_on_a_non_square_grid():
    torch.manual_seed(0)
    decoder = build_decoder(transformer_dim=D, num_classes=C)
    out = decoder(*_inputs(h=3, w=5))
    assert out.shape == (2, C, 12, 20)
    assert decoder.mask_tokens.weight.shape == (C, D)
    assert len(decoder.output_hypernetworks_mlps) == C
    # SARTM builds neither the IoU nor the object-score head.
    names = {n for n, _ in decoder.named_parameters()}
    assert not any(n.startswith(("iou_", "pred_obj", "obj_score")) for n in names)


def test_each_image_decodes_independently_of_the_batch():
    torch.manual_seed(0)
    decoder = build_decoder(transformer_dim=D, num_classes=C).eval()
    emb, s0, s1 = _inputs(b=3)
    with torch.no_grad():
        batched = decoder(emb, s0, s1)
        single = decoder(emb[1:2], s0[1:2], s1[1:2])
    torch.testing.assert_close(batched[1:2], single, rtol=1e-5, atol=1e-5)


def test_positional_encoding_follows_the_grid_and_the_dense_prompt_is_used():
    torch.manual_seed(0)
    decoder = build_decoder(transformer_dim=D, num_classes=C).eval()
    assert decoder.prompt.dense_pe((3, 5)).shape == (1, D, 3, 5)
    emb, s0, s1 = _inputs()
    with torch.no_grad():
        before = decoder(emb, s0, s1)
        decoder.prompt.no_mask_embed.weight.add_(1.0)
        after = decoder(emb, s0, s1)
    assert not torch.allclose(before, after)


def test_high_resolution_maps_reach_the_logits_and_every_part_trains():
    torch.manual_seed(0)
    decoder = build_decoder(transformer_dim=D, num_classes=C)
    emb, s0, s1 = (x.requires_grad_() for x in _inputs())
    decoder(emb, s0, s1).square().mean().backward()
    for x in (emb, s0, s1):
        assert float(x.grad.abs().sum()) > 0
    # conv_s0 / conv_s1 act before fusion (project_high_res), not inside forward.
    unused = {n for n, p in decoder.named_parameters() if p.grad is None}
    assert unused == {"conv_s0.weight", "conv_s0.bias", "conv_s1.weight", "conv_s1.bias"}
    f0, f1 = decoder.project_high_res(torch.randn(1, D, 8, 8), torch.randn(1, D, 4, 4))
    assert f0.shape == (1, D // 8, 8, 8) and f1.shape == (1, D // 4, 4, 4)


def test_sam2_hyper_parameters_at_full_width():
    decoder = build_decoder(transformer_dim=256, num_classes=9)
    t = decoder.transformer
    assert isinstance(t, TwoWayTransformer)
    assert (t.depth, t.num_heads, t.mlp_dim) == (2, 8, 2048)
    assert build_decoder(transformer_dim=24, num_classes=2).transformer.num_heads == 6


def test_zero_classes_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        ClassTokenMaskDecoder(transformer_dim=D, transformer=torch.nn.Identity(), num_classes=0)
