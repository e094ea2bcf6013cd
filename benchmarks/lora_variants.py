"""Speed of the q/v LoRA designs on the SAM2 encoder (run on demand, not a test).

    python benchmarks/lora_variants.py [--backbones test_hiera_tiny sam2_hiera_s] [--side 256]

Variants, all with per-modality adapters over the joint RGB+thermal batch:
  fused   (used)  one matmul with the concatenated frozen q|k|v weight, LoRA added to q and v
  split           three matmuls (q, k, v sub-Linears), LoRA added to q and v
  qkv-peft        peft's stock LoRA on the fused qkv Linear: also adapts k (not the method);
                  shared adapter only, for the cost of the usual approach
Inference: unmerged vs merged (`merge_lora`) vs the frozen encoder without adapters.
Reports the median time per step and the ratio to the chosen variant.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, inject_adapter_in_model

from sartm.model.backbones import build_image_encoder
from sartm.model.encoder import RGBTEncoder
from sartm.model.lora import QKVProjection


class SplitQKV(QKVProjection):
    """The alternative: q, k and v as three separate matmuls."""

    def forward(self, x):
        groups = self.routing.groups
        q, k, v = self.base_linear("q")(x), self.k(x), self.base_linear("v")(x)
        n = x.shape[0] // len(groups)
        for i, adapter in enumerate(groups):
            part = slice(i * n, (i + 1) * n)
            q[part] += self._delta("q", adapter, x[part])
            v[part] += self._delta("v", adapter, x[part])
        return torch.cat([q, k, v], dim=-1)


def timed(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(model, rgb, thermal):
    def step():
        model.zero_grad(set_to_none=True)
        feats = model(rgb, thermal)
        sum(f.float().square().mean() for level in feats for f in level).backward()

    return step


class StockPeftEncoder(torch.nn.Module):
    """peft's LoRA on Hiera's fused qkv Linear (rank r on all of q, k, v), shared adapter."""

    def __init__(self, backbone: str, rank: int):
        super().__init__()
        self.enc = build_image_encoder(backbone)
        self.enc.requires_grad_(False)
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=r".*\.attn\.qkv")
        inject_adapter_in_model(config, self.enc)
        with torch.no_grad():
            for n, p in self.enc.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)

    def forward(self, rgb, thermal):
        feats = self.enc(torch.cat([rgb, thermal]))["backbone_fpn"]
        b = rgb.shape[0]
        return [f[:b] for f in feats], [f[b:] for f in feats]


def run(backbone: str, *, side: int, batch: int, rank: int, repeats: int, device: str) -> None:
    torch.manual_seed(0)
    rgb = torch.randn(batch, 3, side, side, device=device)
    thermal = torch.randn(batch, 3, side, side, device=device)

    def encoder():
        enc = RGBTEncoder(backbone=backbone, lora_rank=rank, lora_alpha=rank, lora_dropout=0.0,
                          lora_sharing="per_modality").to(device)
        with torch.no_grad():  # non-zero B, as after some training
            for n, p in enc.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        return enc

    results = {}
    fused = encoder()
    results["train fused (used)"] = timed(train_step(fused, rgb, thermal), repeats)
    split = encoder()
    for m in split.modules():
        if isinstance(m, QKVProjection):
            m.__class__ = SplitQKV
    results["train split q/k/v"] = timed(train_step(split, rgb, thermal), repeats)
    stock = StockPeftEncoder(backbone, rank).to(device)
    results["train peft on fused qkv (adapts k)"] = timed(train_step(stock, rgb, thermal), repeats)

    fused.eval()
    with torch.no_grad():
        results["infer unmerged"] = timed(lambda: fused(rgb, thermal), repeats)
        fused.merge_lora()
        results["infer merged (used)"] = timed(lambda: fused(rgb, thermal), repeats)
        frozen = build_image_encoder(backbone).to(device).eval()
        x = torch.cat([rgb, thermal])
        results["infer frozen, no LoRA"] = timed(lambda: frozen(x), repeats)

    print(f"\n{backbone}: 2 x ({batch}, 3, {side}, {side}) on {device}, rank {rank}, "
          f"median of {repeats}, {torch.get_num_threads()} threads")
    base = {"train": results["train fused (used)"], "infer": results["infer merged (used)"]}
    for name, seconds in results.items():
        ratio = seconds / base[name.split()[0]]
        print(f"  {name:40s} {seconds * 1000:9.1f} ms   x{ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["test_hiera_tiny", "sam2_hiera_s"])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1, help="images per modality")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    for backbone in args.backbones:
        run(backbone, side=args.side, batch=args.batch, rank=args.rank, repeats=args.repeats,
            device=args.device)


if __name__ == "__main__":
    main()
