"""Speed of the q/v LoRA designs on the SAM2 encoder (run on demand, not a test).

    python benchmarks/lora_variants.py [--backbones test_hiera_tiny sam2_hiera_s] [--side 256]
    # on a shared CPU machine, steadier: --threads 1 --cpu-time

Variants, all with per-modality adapters over the joint RGB+thermal batch:
  fused   (used)  one matmul with the concatenated frozen q|k|v weight; both adapters' q and v
                  updates as batched low-rank matmuls (B block-diagonal into the q, v rows)
  in-place        the fused matmul, then per-adapter q and v updates added into column slices
  split           three matmuls (q, k, v sub-Linears), updates added per part of the batch
  qkv-peft        peft's stock LoRA on the fused qkv Linear: also adapts k (not the method);
                  shared adapter only, for the cost of the usual approach
Inference: unmerged vs merged (`merge_lora`) vs the frozen encoder without adapters.
Reports the best time per step (variants interleaved) and the ratio to the chosen variant.
"""

from __future__ import annotations

import argparse
import time

import torch
from peft import LoraConfig, inject_adapter_in_model

from sartm.model.backbones import build_image_encoder
from sartm.model.encoder import RGBTEncoder
from sartm.model.lora import QKVProjection


def delta(qkv: QKVProjection, name: str, adapter: str, x):
    """One adapter's update of one projection, as peft's own forward computes it."""
    layer = getattr(qkv, name)
    a, b = layer.lora_A[adapter], layer.lora_B[adapter]
    return b(a(layer.lora_dropout[adapter](x))) * layer.scaling[adapter]


class InPlaceQKV(QKVProjection):
    """Alternative: the fused matmul, then each adapter's q and v updates added in place into
    column slices of its part of the batch (strided writes)."""

    def forward(self, x):
        groups = self.routing.groups
        out = torch.nn.functional.linear(x, *self.fused_weight())
        n, d = x.shape[0] // len(groups), self.dim_out
        for i, adapter in enumerate(groups):
            part = slice(i * n, (i + 1) * n)
            out[part, ..., :d] += delta(self, "q", adapter, x[part])
            out[part, ..., 2 * d :] += delta(self, "v", adapter, x[part])
        return out


class SplitQKV(QKVProjection):
    """The alternative: q, k and v as three separate matmuls."""

    def forward(self, x):
        groups = self.routing.groups
        q, k, v = self.base_linear("q")(x), self.k(x), self.base_linear("v")(x)
        n = x.shape[0] // len(groups)
        for i, adapter in enumerate(groups):
            part = slice(i * n, (i + 1) * n)
            q[part] += delta(self, "q", adapter, x[part])
            v[part] += delta(self, "v", adapter, x[part])
        return torch.cat([q, k, v], dim=-1)


CLOCK = time.perf_counter


def timed(steps: dict, repeats: int) -> dict[str, float]:
    """Best time per step; the variants take turns so that other load on the machine hits all."""
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = CLOCK()
            step()
            times[name].append(CLOCK() - start)
    return {name: min(t) for name, t in times.items()}


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
        enc = RGBTEncoder(
            backbone=backbone,
            lora_rank=rank,
            lora_alpha=rank,
            lora_dropout=0.0,
            lora_sharing="per_modality",
        ).to(device)
        with torch.no_grad():  # non-zero B, as after some training
            for n, p in enc.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        return enc

    fused, inplace, split = encoder(), encoder(), encoder()
    for model, cls in ((inplace, InPlaceQKV), (split, SplitQKV)):
        for m in model.modules():
            if isinstance(m, QKVProjection):
                m.__class__ = cls
    stock = StockPeftEncoder(backbone, rank).to(device)
    results = timed(
        {
            "train fused (used)": train_step(fused, rgb, thermal),
            "train fused, in-place slices": train_step(inplace, rgb, thermal),
            "train split q/k/v": train_step(split, rgb, thermal),
            "train peft on fused qkv (adapts k)": train_step(stock, rgb, thermal),
        },
        repeats,
    )
    unmerged, merged = encoder().eval(), encoder().eval()
    merged.merge_lora()
    frozen = build_image_encoder(backbone).to(device).eval()
    x = torch.cat([rgb, thermal])
    with torch.no_grad():
        results |= timed(
            {
                "infer unmerged": lambda: unmerged(rgb, thermal),
                "infer merged (used)": lambda: merged(rgb, thermal),
                "infer frozen, no LoRA": lambda: frozen(x),
            },
            repeats,
        )

    print(
        f"\n{backbone}: 2 x ({batch}, 3, {side}, {side}) on {device}, rank {rank}, "
        f"best of {repeats}, {torch.get_num_threads()} threads, clock {CLOCK.__name__}"
    )
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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time (steadier on a shared machine; use --threads 1)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    for backbone in args.backbones:
        run(
            backbone,
            side=args.side,
            batch=args.batch,
            rank=args.rank,
            repeats=args.repeats,
            device=args.device,
        )


if __name__ == "__main__":
    main()
