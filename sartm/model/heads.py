"""Path S1: the auxiliary segmentation head on the fused maps (paper Eq. 10, Table VIII).

Every head takes the three fused levels high resolution first, `[F~_0 (d/8, stride 4),
F~_1 (d/4, stride 8), F~_n (d, stride 16)]`, and returns C logits at stride 4; the model
upsamples them to the input size. Unlike the published code (which built new, untrained convs
on every forward pass), each head is an ordinary module whose weights are trained and saved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AUX_HEADS = ("fpn", "deeplab", "segformer", "none")


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def conv_bn_relu(cin: int, cout: int, *, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FPNHead(nn.Module):
    """Eq. 10: `Conv3x3(Up(F~_1 + Up(F~_n)) + F~_0)`, each level first projected (1x1) to a
    common width, then a 1x1 classifier to C logits."""

    def __init__(self, *, in_channels: Sequence[int], width: int, num_classes: int) -> None:
        super().__init__()
        c0, c1, cn = in_channels
        self.proj_s0 = nn.Conv2d(c0, width, kernel_size=1)
        self.proj_s1 = nn.Conv2d(c1, width, kernel_size=1)
        self.proj_sn = nn.Conv2d(cn, width, kernel_size=1)
        self.fuse = conv_bn_relu(width, width)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        f0, f1, fn = feats
        x1 = self.proj_s1(f1)
        x = x1 + _up(self.proj_sn(fn), x1)
        x0 = self.proj_s0(f0)
        x = _up(x, x0) + x0
        return self.classifier(self.fuse(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on the stride-16 map (DeepLabV3's rates for stride 16)."""

    def __init__(self, *, cin: int, width: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, width, kernel=1)]
            + [conv_bn_relu(cin, width, dilation=r) for r in rates]
        )
        # Image pooling branch; no BatchNorm on the 1x1 pooled map (undefined for batch size 1).
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.project = conv_bn_relu((len(rates) + 2) * width, width, kernel=1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabHead(nn.Module):
    """DeepLabV3+: ASPP on F~_n, upsampled and joined with the low-level F~_0 (stride 4)."""

    def __init__(
        self, *, in_channels: Sequence[int], width: int, num_classes: int, low_level: int = 48
    ) -> None:
        super().__init__()
        c0, _, cn = in_channels
        low = min(low_level, width)
        self.aspp = ASPP(cin=cn, width=width)
        self.reduce_s0 = conv_bn_relu(c0, low, kernel=1)
        self.refine = nn.Sequential(conv_bn_relu(width + low, width), conv_bn_relu(width, width))
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        f0, _, fn = feats
        low = self.reduce_s0(f0)
        x = torch.cat((_up(self.aspp(fn), low), low), dim=1)
        return self.classifier(self.refine(x))


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decoder: per-level linear to a common width, upsample to stride 4,
    concatenate, linear fuse, classify."""

    def __init__(self, *, in_channels: Sequence[int], width: int, num_classes: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)
        self.fuse = conv_bn_relu(len(in_channels) * width, width, kernel=1)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        target = feats[0]
        x = torch.cat([_up(lin(f), target) for lin, f in zip(self.linears, feats)], dim=1)
        return self.classifier(self.fuse(x))


HEADS: dict[str, type[nn.Module]] = {
    "fpn": FPNHead,
    "deeplab": DeepLabHead,
    "segformer": SegFormerHead,
}


def build_head(
    name: str, *, in_channels: Sequence[int], width: int, num_classes: int
) -> nn.Module | None:
    """The S1 head named by `cfg.model.aux_head`; `none` builds nothing."""
    if name == "none":
        return None
    if name not in HEADS:
        raise ValueError(f"model.aux_head: {name!r} is not a head; allowed: {', '.join(AUX_HEADS)}")
    if width < 1:
        raise ValueError(f"model.aux_channels: must be >= 1 for the {name} head, got {width}")
    return HEADS[name](in_channels=tuple(in_channels), width=width, num_classes=num_classes)
