"""`python -m benchmarks.run`: speed and memory of training, evaluation, data loading, pipeline.

The configuration comes from params.yaml exactly as for `sartm train` (preset, dataset, --set),
so `--preset paper --dataset pst900` measures Hiera base-plus at crop 1280, batch 8. The result
is printed as one table and written as JSON with the host, device, library versions, git commit
and the resolved configuration, so files from different machines can be compared.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from benchmarks import device as devmod
from benchmarks.report import format_table
from sartm.cli.common import config_options
from sartm.config import PROJECT_ROOT, Config
from sartm.engine import runtime

SCHEMA = "sartm-benchmark/1"
PARTS = ("train", "memory", "eval", "data", "pipeline", "startup")


def _attempt(errors: dict[str, str], where: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run one measurement; an error (e.g. out of memory) is recorded and the others go on."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one failed measurement must not lose the rest
        traceback.print_exc(file=sys.stderr)
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    errors[where] = message
    gc.collect()  # the failed measurement's tensors are unreachable only now
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"error": message}


def _config_block(cfg: Config) -> dict[str, Any]:
    return {
        "hash": cfg.hash(),
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "source": cfg.data.dataset,
        "run": cfg.run,
        "overrides": list(cfg.overrides),
        "backbone": cfg.model.backbone,
        "crop_size": cfg.data.crop_size,
        "eval_size": cfg.data.eval_size,
        "batch_size": cfg.train.batch_size,
        "weights": "random (seeded; speed does not depend on the values)",
        "settings": cfg.to_dict(),
    }


def _parse_parts(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise click.BadParameter(f"{value!r}: choose from {', '.join(PARTS)} (comma-separated)")
    return parts


def _parse_workers(value: str | None) -> tuple[int, ...]:
    from benchmarks.loading import WORKER_COUNTS

    if value is None:
        cpus = devmod.cpu_count()
        return tuple(n for n in WORKER_COUNTS if n <= cpus)
    try:
        counts = tuple(int(n) for n in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from exc
    if any(n < 0 for n in counts):
        raise click.BadParameter(f"{value!r}: worker counts must be >= 0")
    return counts


def _parse_variants(specs: tuple[str, ...], cfg: Config) -> dict[str, tuple[str, ...]]:
    """'NAME:key=value,key=value' -> {NAME: overrides}; each override is checked against the
    schema now (a typo fails before any measurement)."""
    from sartm.config import ConfigError

    variants: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        overrides = tuple(o.strip() for o in rest.split(",") if o.strip())
        if not sep or not name or not overrides:
            raise click.BadParameter(f"{spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
        if name in ("optimised", "baseline") or name in variants:
            raise click.BadParameter(f"{spec!r}: the name {name!r} is taken")
        try:
            cfg.with_overrides(list(overrides))
        except ConfigError as exc:
            raise click.BadParameter(f"{spec!r}: {exc}") from exc
        variants[name] = overrides
    return variants


def _parse_batches(value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(b) for b in value.split(",") if b.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from exc
    if not batches or any(b < 1 for b in batches):
        raise click.BadParameter(f"{value!r}: batch sizes must be >= 1")
    return batches


def run_benchmark(
    cfg: Config,
    *,
    parts: tuple[str, ...],
    steps: int,
    warmup: int,
    ms_steps: int,
    compare_baseline: bool,
    peak_override: float | None,
    workers: tuple[int, ...],
    variants: dict[str, tuple[str, ...]] | None = None,
    profile: int = 0,
    memory_batches: tuple[int, ...] = (),
    data_width: int | None,
    data_batches: int,
    scratch: Path,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every requested measurement for one configuration, as the JSON-ready result dict.

    save(result) is called after each part, so a run stopped by a time limit keeps what it
    measured."""
    save = save or (lambda result: None)
    from benchmarks.train_step import baseline_config, measure_training

    device = runtime.resolve_device(cfg.train.device)
    env = devmod.environment(device)
    peak = devmod.peak_tflops(env["device"], peak_override)
    errors: dict[str, str] = {}
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "environment": env,
        "config": _config_block(cfg),
        "settings": {
            "parts": list(parts),
            "steps": steps,
            "warmup": warmup,
            "ms_steps": ms_steps,
            "compare_baseline": compare_baseline,
            "variants": {k: list(v) for k, v in (variants or {}).items()},
            "profile_steps": profile,
            "memory_batches": list(memory_batches),
            "workers": list(workers),
            "data_batches": data_batches,
        },
        "peak": {
            "tflops": peak.tflops,
            "source": peak.source,
            "matmul_tflops_measured": devmod.matmul_tflops(device),
        },
        "errors": errors,
    }

    if "train" in parts:
        train_variants = {"optimised": (cfg, cfg.train.tf32)}
        for name, overrides in (variants or {}).items():
            extra = cfg.with_overrides(list(overrides))
            train_variants[name] = (extra, extra.train.tf32)
        if compare_baseline:
            train_variants["baseline"] = (baseline_config(cfg), False)  # TF32 off as well
        train = _attempt(
            errors,
            "train",
            lambda: measure_training(
                train_variants,
                device,
                steps=steps,
                warmup=warmup,
                peak_tflops=peak.tflops,
                profile=profile,
            ),
        )
        for name, r in train.items():
            if isinstance(r, dict) and "error" in r:
                errors[f"train.{name}"] = r["error"]
        base = train.get("baseline", {})
        for name, r in list(train.items()):
            if name != "baseline" and "step" in r and "step" in base:
                r["speedup"] = base["step"]["median_s"] / r["step"]["median_s"]
                # fastest against fastest: less sensitive to other load on the machine
                r["speedup_min"] = base["step"]["min_s"] / r["step"]["min_s"]
        if "speedup" in train.get("optimised", {}):
            train["speedup"] = train["optimised"]["speedup"]
            train["speedup_min"] = train["optimised"]["speedup_min"]
        result["train"] = train
        save(result)

    if "memory" in parts:
        from benchmarks.train_step import measure_memory

        result["memory"] = _attempt(
            errors, "memory", lambda: measure_memory(cfg, device, memory_batches or (1, 2))
        )
        save(result)

    if "eval" in parts:
        from benchmarks.inference import measure_eval

        result["eval"] = {
            "single_scale": _attempt(
                errors,
                "eval.single_scale",
                lambda: measure_eval(cfg, device, steps=steps, warmup=warmup, multi_scale=False),
            ),
            "multi_scale_flip": _attempt(
                errors,
                "eval.multi_scale_flip",
                lambda: measure_eval(
                    cfg, device, steps=ms_steps, warmup=min(warmup, 1), multi_scale=True
                ),
            ),
        }
        save(result)

    if "data" in parts:
        result["data"] = _attempt(
            errors,
            "data",
            lambda: _data_part(cfg, result, device, workers, data_width, data_batches, scratch),
        )
        save(result)

    if "pipeline" in parts:
        from benchmarks.pipeline import measure_pipeline

        result["pipeline"] = _attempt(errors, "pipeline", lambda: measure_pipeline(PROJECT_ROOT))
        save(result)

    if "startup" in parts:
        from benchmarks.startup import measure_startup

        result["startup"] = _attempt(errors, "startup", lambda: measure_startup(PROJECT_ROOT))
        save(result)
    return result


def _data_part(
    cfg: Config,
    result: dict[str, Any],
    device: torch.device,
    workers: tuple[int, ...],
    width: int | None,
    batches: int,
    scratch: Path,
) -> dict[str, Any]:
    from benchmarks.loading import measure_loading, prepare_data

    samples = max(16, 2 * cfg.train.batch_size)
    data_cfg, described = prepare_data(cfg, scratch, samples=samples, width=width)
    rows = measure_loading(
        data_cfg,
        batches=batches,
        worker_counts=workers,
        pin_memory=device.type == "cuda",
    )
    need = result.get("train", {}).get("optimised", {}).get("images_per_s")
    for row in rows:
        row["vs_training"] = row["samples_per_s"] / need if need else None
    enough = [r["workers"] for r in rows if r["vs_training"] is not None and r["vs_training"] >= 1]
    return {
        "dataset": described,
        "consumption_images_per_s": need,
        "rows": rows,
        "workers_keeping_up": min(enough) if enough else None,
    }


def write_json(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    tmp.replace(out)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_options()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON result file [default: results/benchmarks/<host>.json].",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Timed steps (training) and batches (evaluation, data loading).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Untimed steps first (compilation, autotuning, allocator warm-up).",
)
@click.option(
    "--ms-steps",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Timed batches of the multi-scale (+ flip) evaluation: 2 x len(eval.scales) passes each.",
)
@click.option(
    "--what",
    "what",
    default=",".join(PARTS),
    show_default=True,
    help="Which measurements, comma-separated: " + ", ".join(PARTS) + ".",
)
@click.option(
    "--compare-baseline",
    is_flag=True,
    help="Also time the model in fp32 eager mode without our optimisations.",
)
@click.option(
    "--variant",
    "variant_specs",
    multiple=True,
    metavar="NAME:KEY=VALUE[,KEY=VALUE]",
    help="An extra training variant timed beside the others, e.g. "
    "'compile:train.compile=true' (repeatable).",
)
@click.option(
    "--profile",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Profile this many extra steps of the optimised variant (torch.profiler).",
)
@click.option(
    "--memory-batches",
    default="1,2",
    show_default=True,
    help="Batch sizes for the memory part (peak memory vs batch, what fits which card).",
)
@click.option(
    "--peak-tflops",
    type=float,
    default=None,
    help="Device peak (dense bf16 TFLOP/s) for MFU [default: the built-in table].",
)
@click.option(
    "--workers",
    default=None,
    help="Data-loader worker counts, e.g. 0,2,4 [default: 0,2,4,8 up to the CPU count].",
)
@click.option(
    "--data-width",
    type=click.IntRange(32, 1024),
    default=None,
    help="Generate the synthetic stand-in this wide (even when prepared data exists).",
)
@click.option(
    "--scratch",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for generated data [default: a temporary folder, removed after].",
)
def main(
    cfg: Config,
    out: Path | None,
    steps: int,
    warmup: int,
    ms_steps: int,
    what: str,
    compare_baseline: bool,
    peak_tflops: float | None,
    workers: str | None,
    data_width: int | None,
    scratch: Path | None,
    variant_specs: tuple[str, ...],
    profile: int,
    memory_batches: str,
) -> None:
    """Measure training, evaluation, data loading and pipeline overhead for one configuration."""
    parts = _parse_parts(what)
    worker_counts = _parse_workers(workers)
    variants = _parse_variants(variant_specs, cfg)
    batches = _parse_batches(memory_batches)
    if peak_tflops is not None and peak_tflops <= 0:
        raise click.BadParameter("must be positive", param_hint="--peak-tflops")
    out = out or Path("results") / "benchmarks" / f"{socket.gethostname()}.json"
    with tempfile.TemporaryDirectory(prefix="sartm-bench-") as tmp:
        result = run_benchmark(
            cfg,
            parts=parts,
            steps=steps,
            warmup=warmup,
            ms_steps=ms_steps,
            compare_baseline=compare_baseline,
            peak_override=peak_tflops,
            workers=worker_counts,
            variants=variants,
            profile=profile,
            memory_batches=batches,
            data_width=data_width,
            data_batches=steps,
            scratch=scratch or Path(tmp),
            save=lambda partial: write_json(partial, out),
        )
    write_json(result, out)
    click.echo(format_table(result))
    click.echo(f"\nwritten: {out}")
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
