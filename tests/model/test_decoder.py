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


def _official_parts(d: int) -> tuple[dict, dict]:
    """State dicts laid out like a checkpoint's `sam_mask_decoder.*` / `sam_prompt_encoder.*`,
    from sam2's own modules with SAM2's settings (high-res path, object-score head)."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder

    torch.manual_seed(1)
    transformer = TwoWayTransformer(depth=2, embedding_dim=d, num_heads=8, mlp_dim=8 * d)
    decoder = MaskDecoder(
        transformer_dim=d,
        transformer=transformer,
        use_high_res_features=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
    )
    prompt = PromptEncoder(
        embed_dim=d, image_embedding_size=(8, 8), input_image_size=(128, 128), mask_in_chans=16
    )
    return decoder.state_dict(), prompt.state_dict()


def test_official_decoder_weights_load_where_they_fit():
    mask_decoder, prompt_encoder = _official_parts(D)
    decoder = build_decoder(transformer_dim=D, num_classes=C)
    fresh_tokens = decoder.mask_tokens.weight.detach().clone()
    report = decoder.load_sam2_state(mask_decoder, prompt_encoder, source="parts")
    assert report.ok, report.format()
    loaded = set(report.loaded)
    assert "sam_mask_decoder.transformer.layers.1.mlp.layers.0.weight" in loaded
    assert "sam_mask_decoder.conv_s0.weight" in loaded
    assert "sam_prompt_encoder.no_mask_embed.weight" in loaded
    assert "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in loaded
    reasons = report.skipped
    assert "4 mask tokens" in reasons["sam_mask_decoder.mask_tokens.weight"]
    assert "fresh" in reasons["sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight"]
    assert "IoU" in reasons["sam_mask_decoder.iou_prediction_head.layers.2.weight"]
    assert "object-score" in reasons["sam_mask_decoder.pred_obj_score_head.layers.0.weight"]
    assert "prompt-free" in reasons["sam_prompt_encoder.point_embeddings.0.weight"]
    assert "prompt-free" in reasons["sam_prompt_encoder.mask_downscaling.0.weight"]
    # Every checkpoint tensor is either loaded or skipped with a reason, nothing twice.
    everything = {f"sam_mask_decoder.{k}" for k in mask_decoder}
    everything |= {f"sam_prompt_encoder.{k}" for k in prompt_encoder}
    assert loaded | set(reasons) == everything and not loaded & set(reasons)
    torch.testing.assert_close(
        decoder.output_upscaling[0].weight, mask_decoder["output_upscaling.0.weight"]
    )
    torch.testing.assert_close(
        decoder.prompt.pe_layer.positional_encoding_gaussian_matrix,
        prompt_encoder["pe_layer.positional_encoding_gaussian_matrix"],
    )
    torch.testing.assert_close(decoder.mask_tokens.weight, fresh_tokens)  # not overwritten
    assert any("4 in the checkpoint, 5 class tokens" in n for n in report.notes)


def test_missing_and_foreign_decoder_weights_are_reported():
    mask_decoder, prompt_encoder = _official_parts(D)
    del mask_decoder["conv_s1.bias"]
    mask_decoder["extra_head.weight"] = torch.zeros(3)
    report = build_decoder(transformer_dim=D, num_classes=C).load_sam2_state(
        mask_decoder, prompt_encoder
    )
    assert report.missing == ["sam_mask_decoder.conv_s1.bias"]
    assert report.unexpected == ["sam_mask_decoder.extra_head.weight"]
    assert not report.ok


def test_decoder_weights_of_another_width_are_refused():
    from sartm.model.sam2_weights import CheckpointError

    mask_decoder, prompt_encoder = _official_parts(D)
    with pytest.raises(CheckpointError, match=r"d = 32"):
        build_decoder(transformer_dim=32, num_classes=C).load_sam2_state(
            mask_decoder, prompt_encoder, source="parts"
        )


def test_prompt_free_call_equals_sam2_with_no_prompt():
    """Our decoder on SAM2's own weights reproduces sam2's MaskDecoder called the way
    SAM2Base._forward_sam_heads calls it without prompts: one padding point of label -1, which
    the prompt encoder pads to two "not-a-point" tokens, and the "no mask" dense embedding."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder

    torch.manual_seed(3)
    h, w = 4, 6
    sam_decoder = MaskDecoder(
        transformer_dim=D,
        transformer=TwoWayTransformer(depth=2, embedding_dim=D, num_heads=8, mlp_dim=8 * D),
        use_high_res_features=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
    ).eval()
    prompt = PromptEncoder(
        embed_dim=D, image_embedding_size=(h, w), input_image_size=(16 * h, 16 * w),
        mask_in_chans=16,
    ).eval()  # fmt: skip
    for p in prompt.parameters():  # a trained checkpoint's embeddings are not zero
        torch.nn.init.normal_(p)
    # Ours, with one "class" token per SAM2 output token (object score, IoU, 4 mask tokens) and
    # SAM2's hypernetworks on the mask-token positions: the transformer sees the same tokens.
    ours = build_decoder(transformer_dim=D, num_classes=6).eval()
    report = ours.load_sam2_state(sam_decoder.state_dict(), prompt.state_dict())
    assert report.ok and "sam_prompt_encoder.not_a_point_embed.weight" in report.loaded
    with torch.no_grad():
        ours.mask_tokens.weight.copy_(
            torch.cat(
                [
                    sam_decoder.obj_score_token.weight,
                    sam_decoder.iou_token.weight,
                    sam_decoder.mask_tokens.weight,
                ]
            )
        )
        for j, mlp in enumerate(sam_decoder.output_hypernetworks_mlps):
            ours.output_hypernetworks_mlps[2 + j].load_state_dict(mlp.state_dict())
        emb, s0, s1 = _inputs(b=2, h=h, w=w)
        sparse, dense = prompt(
            points=(torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32)),
            boxes=None,
            masks=None,
        )
        assert sparse.shape == (2, 2, D)
        masks, *_ = sam_decoder(
            image_embeddings=emb,
            image_pe=prompt.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,  # mask tokens 1..3
            repeat_image=False,
            high_res_features=[s0, s1],
        )
        logits = ours(emb, s0, s1)
    torch.testing.assert_close(logits[:, 3:6], masks, rtol=1e-4, atol=1e-4)


def test_the_prompt_embeddings_stay_frozen_in_sartm(tmp_path):
    from sartm import config as cfgmod
    from sartm.model.sartm import build_model

    cfg = cfgmod.resolve(
        cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml"),
        dataset="pst900",
        run="no-language",
        preset="ci",
        overrides=["model.backbone=test_hiera_micro", "model.checkpoint=null"],
    )
    model = build_model(cfg, num_classes=5)
    prompt = dict(model.decoder.prompt.named_parameters())
    assert set(prompt) == {"no_mask_embed.weight", "not_a_point_embed.weight"}
    assert not any(p.requires_grad for p in prompt.values())
    assert not any(k.startswith("decoder.prompt.") for k in model.trainable_keys())
