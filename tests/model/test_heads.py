"""The S1 auxiliary heads: Eq. 10's FPN head, the DeepLabV3+ and SegFormer alternatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sartm.model.heads import AUX_HEADS, DeepLabHead, FPNHead, build_head

D, C = 64, 5
CHANNELS = (D // 8, D // 4, D)


def _fused(b: int = 2, h: int = 4, w: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(b, D // 8, 4 * h, 4 * w, generator=g, requires_grad=True),
        torch.randn(b, D // 4, 2 * h, 2 * w, generator=g, requires_grad=True),
        torch.randn(b, D, h, w, generator=g, requires_grad=True),
    ]


@pytest.mark.parametrize("name", [h for h in AUX_HEADS if h != "none"])
def test_head_gives_class_logits_at_stride_4_and_trains(name):
    torch.manual_seed(0)
    head = build_head(name, in_channels=CHANNELS, width=32, num_classes=C)
    feats = _fused()
    out = head(feats)
    assert out.shape == (2, C, 16, 24)
    out.square().mean().backward()
    assert [n for n, p in head.named_parameters() if p.grad is None] == []
    uses = {"fpn": (0, 1, 2), "deeplab": (0, 2), "segformer": (0, 1, 2)}[name]
    for i in uses:
        assert float(feats[i].grad.abs().sum()) > 0, f"{name} ignores level {i}"


def test_fpn_head_follows_eq_10():
    torch.manual_seed(0)
    head = FPNHead(in_channels=CHANNELS, width=16, num_classes=C).eval()
    f0, f1, fn = (f.detach() for f in _fused())

    def up(x, like):
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    x1 = head.proj_s1(f1)
    x0 = head.proj_s0(f0)
    want = head.classifier(head.fuse(up(x1 + up(head.proj_sn(fn), x1), x0) + x0))
    torch.testing.assert_close(head([f0, f1, fn]), want)


def test_deeplab_head_trains_with_batch_size_one():
    head = DeepLabHead(in_channels=CHANNELS, width=16, num_classes=C).train()
    out = head([f[:1] for f in _fused()])
    assert out.shape == (1, C, 16, 24)
    assert len(head.aspp.branches) == 4  # 1x1 + rates 6, 12, 18 (+ image pooling)


def test_none_and_bad_names():
    assert build_head("none", in_channels=CHANNELS, width=0, num_classes=C) is None
    with pytest.raises(ValueError, match="'upernet' is not a head"):
        build_head("upernet", in_channels=CHANNELS, width=16, num_classes=C)
    with pytest.raises(ValueError, match="aux_channels"):
        build_head("fpn", in_channels=CHANNELS, width=0, num_classes=C)
