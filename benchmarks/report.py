"""The plain-text table printed at the end of a benchmark (the JSON file holds every detail)."""

from __future__ import annotations

from typing import Any


def _grid(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ms(stats: dict[str, Any], key: str) -> str:
    return f"{stats[key] * 1000:,.1f}"


def _train_rows(train: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, r in train.items():
        if not isinstance(r, dict):
            continue
        if "error" in r:
            rows.append([name, "error: " + r["error"][:60], "", "", "", "", "", "", ""])
            continue
        sw = r["switches"]
        on = [sw["autocast"]]
        on += [k for k in ("compile", "fused_adamw", "channels_last") if sw[k]]
        on += ["tf32"] if sw["tf32_matmul"] else []
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else ""
        rows.append(
            [
                f"{name} ({', '.join(on)})",
                _num(r["images_per_s"], 2),
                _ms(r["step"], "median_s"),
                _ms(r["step"], "p10_s"),
                _ms(r["step"], "p90_s"),
                _num(r["memory_mb"], 0),
                _num(r["tflops"], 3),
                mfu,
                speedup,
            ]
        )
    return rows


def format_table(result: dict[str, Any]) -> str:
    """One readable summary of a benchmark result (the dict written to JSON)."""
    env, cfg = result["environment"], result["config"]
    git = (env.get("git_commit") or "unknown")[:10] + (" (dirty)" if env.get("git_dirty") else "")
    lines = [
        f"sartm benchmark: {cfg['dataset']} ({cfg['preset']} preset, config {cfg['hash']}), "
        f"{cfg['backbone']}, crop {cfg['crop_size']}, batch {cfg['batch_size']}",
        f"host {env['host']} | {env['device']} | torch {env['torch']} "
        f"(CUDA build {env.get('torch_cuda_build')}) | git {git}",
    ]
    peak = result.get("peak", {})
    if peak:
        measured = peak.get("matmul_tflops_measured")
        lines.append(
            f"peak for MFU: {_num(peak.get('tflops'))} TFLOP/s ({peak.get('source')})"
            + (f"; bf16 matmul measured here: {measured:,.0f} TFLOP/s" if measured else "")
        )
    mem = "peak MiB" if env["device_type"] == "cuda" else "RSS +MiB"
    train = result.get("train")
    if train:
        lines += ["", "Training step (random inputs on the device, random weights)"]
        lines += _grid(
            [
                "variant",
                "img/s",
                "median ms",
                "p10 ms",
                "p90 ms",
                "memory MiB",
                "TFLOP/s",
                "MFU",
                "vs baseline",
            ],
            _train_rows(train),
        )
        lines.append(
            "  memory: the variant's own (weights, optimiser, inputs) + its largest step growth"
            + ("" if env["device_type"] == "cuda" else ", as resident set")
        )
        if train.get("speedup"):
            lines.append(
                f"  speed-up, optimised vs baseline: {train['speedup']:.2f}x median step, "
                f"{train['speedup_min']:.2f}x fastest step"
            )
        profiled = train.get("optimised", {}).get("profile")
        if profiled:
            from benchmarks.profile import format_profile

            lines += ["", "Profile of the optimised step"] + format_profile(profiled)
    memory = result.get("memory")
    if memory:
        lines += [
            "",
            f"Training memory vs batch (optimised without compile, crop {cfg['crop_size']})",
        ]
        if "error" in memory:
            lines.append(f"  error: {memory['error']}")
        else:
            lines += _grid(
                ["batch", "peak GiB"],
                [
                    [str(r["batch"]), r.get("peak_gib", "error: " + r.get("error", "")[:60])]
                    for r in memory["rows"]
                ],
            )
            if "max_batch" in memory:
                fits = ", ".join(f"{k}: {v}" for k, v in memory["max_batch"].items())
                lines.append(
                    f"  {memory['fixed_gib']} GiB + {memory['per_sample_gib']} GiB per sample; "
                    f"largest batch per card: {fits}"
                )
    ev = result.get("eval")
    if ev:
        lines += [
            "",
            f"Evaluation (padded to {cfg['eval_size']} square, LoRA merged, predict_probs)",
        ]
        rows = []
        for r in ev.values():
            if "error" in r:
                rows.append([r.get("mode", "?"), "error: " + r["error"][:60], "", ""])
            else:
                rows.append(
                    [
                        f"{r['mode']} ({r['precision']})",
                        _num(r["images_per_s"], 2),
                        _ms(r["step"], "median_s"),
                        _num(r["memory_mb"], 0),
                    ]
                )
        lines += _grid(["mode", "img/s", "batch ms", mem], rows)
    data = result.get("data")
    if data:
        if "error" in data:
            lines += ["", f"Data loading: error: {data['error']}"]
        else:
            src = data["dataset"]
            size = "x".join(map(str, src["image_size"])) if "image_size" in src else src["source"]
            need = data.get("consumption_images_per_s")
            lines += [
                "",
                f"Data loading ({src['dataset']} {size}, training augmentation, batch "
                f"{cfg['batch_size']}; one training step consumes {_num(need, 2)} img/s)",
            ]
            rows = [
                [
                    f"{r['workers']} workers",
                    _num(r["samples_per_s"], 2),
                    _num(r["startup_s"], 2),
                    "n/a" if r.get("vs_training") is None else f"{r['vs_training']:.2f}x",
                ]
                for r in data["rows"]
            ]
            lines += _grid(["workers", "samples/s", "start-up s", "vs training"], rows)
    pipe = result.get("pipeline")
    if pipe:
        lines += ["", "Pipeline overhead"]
        rows = []
        for name, r in pipe.items():
            if "skipped" in r:
                rows.append([name, "skipped: " + r["skipped"]])
            elif r.get("returncode") != 0:
                rows.append([name, f"{_num(r['wall_s'], 2)} s, failed ({r.get('returncode')})"])
            else:
                rows.append([name, f"{_num(r['wall_s'], 2)} s"])
        lines += _grid(["command", "wall time"], rows)
    start = result.get("startup")
    if start:
        lines += ["", "Start-up per process (median; import seconds from python -X importtime)"]
        rows = []
        for name, r in start.items():
            if "error" in r:
                rows.append([name, "failed: " + r["error"][-80:], "", "", ""])
                continue
            heavy = ", ".join(
                f"{k[:-2]} {v:.2f}"
                for k, v in sorted(r.items(), key=lambda kv: -kv[1])
                if k.endswith("_s") and k not in ("total_s", "torch_s", "beyond_torch_s", "wall_s")
            )
            rows.append(
                [
                    name,
                    _num(r["torch_s"], 2),
                    _num(r["beyond_torch_s"], 2),
                    _num(r["wall_s"], 1),
                    heavy,
                ]
            )
        lines += _grid(["command", "torch s", "beyond torch s", "process s", "packages s"], rows)
    for where, message in result.get("errors", {}).items():
        lines.append(f"ERROR in {where}: {message}")
    return "\n".join(lines)
