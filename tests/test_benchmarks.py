"""Smoke test of the benchmark harness: one tiny step of everything on the CPU, valid JSON out.

No timing is asserted (the machine is shared); the test checks that the real measurement code
runs end to end and that the figures written are consistent with each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks folder sits beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.device import PEAK_BF16_TFLOPS, peak_tflops  # noqa: E402
from benchmarks.flops import count_flops  # noqa: E402
from benchmarks.timing import StepTimer, summarise  # noqa: E402

TINY = (
    "--preset", "ci", "--dataset", "pst900",
    "--set", "model.backbone=test_hiera_micro", "--set", "model.checkpoint=null",
    "--set", "data.crop_size=64",
    "--set", "data.eval_size=64", "--set", "train.batch_size=2",
    "--set", "eval.scales=[0.5,1.0]", "--set", "train.device=cpu",
)  # fmt: skip


def run_harness(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "bench.json"
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *TINY, "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, out


def test_harness_runs_one_tiny_step_and_writes_consistent_json(tmp_path: Path) -> None:
    started = time.perf_counter()
    done, out = run_harness(
        tmp_path,
        "--steps", "1", "--warmup", "0", "--ms-steps", "1",
        "--what", "train,memory,eval,data", "--compare-baseline", "--workers", "0",
        "--data-width", "64", "--variant", "cl:train.channels_last=true", "--profile", "1",
        "--memory-batches", "1,2",
    )  # fmt: skip
    wall_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["schema"] == "sartm-benchmark/1"
    assert result["errors"] == {}
    assert result["environment"]["device"].startswith("cpu")
    assert result["environment"]["torch"] == torch.__version__.split("+")[0]
    cfg = result["config"]
    assert (cfg["backbone"], cfg["crop_size"], cfg["batch_size"]) == ("test_hiera_micro", 64, 2)
    assert cfg["settings"]["data"]["dataset"] == "synth-pst900"
    assert result["peak"]["tflops"] is None  # a CPU has no MFU

    train = result["train"]
    opt, base = train["optimised"], train["baseline"]
    assert opt["switches"]["autocast"] == "fp32"  # precision auto on a CPU
    assert base["switches"] == {
        "autocast": "fp32",
        "compile": False,
        "fused_adamw": False,
        "channels_last": False,
        "tf32_matmul": False,
        "tf32_cudnn": False,
    }
    assert base["config_hash"] != opt["config_hash"]
    for r in (opt, base):  # physical bounds, not the harness's own formulas
        assert r["step"]["n"] == 1 and 0 < r["step"]["median_s"] < wall_s
        assert 2 / wall_s < r["images_per_s"]  # 2 images per step, and a step is within the run
        assert r["memory_kind"] == "cpu peak resident set"
        assert r["static_mb"] > 0 and r["memory_mb"] >= r["static_mb"]
        assert r["mfu"] is None
        assert set(r["last_losses"]) >= {"loss", "ce_s0"}
    # FLOPs are counted once, including Hiera's CPU attention kernel, and reused by the baseline
    assert opt["flops_per_step"] > 0 and base["flops_per_step"] == opt["flops_per_step"]
    assert any("scaled_dot_product" in op for op in opt["flops_by_op"])
    assert opt["flops_per_step"] / wall_s / 1e12 < opt["tflops"]
    assert train["speedup"] > 0
    # an extra variant is timed beside the others, with its own switches and speed-up
    extra = train["cl"]
    assert extra["switches"]["channels_last"] and not opt["switches"]["channels_last"]
    assert extra["speedup"] > 0 and extra["flops_per_step"] == opt["flops_per_step"]
    # the profile splits the optimised step's operator time by kind
    prof = opt["profile"]
    assert prof["steps"] == 1 and prof["rows_are"].startswith("aten operators")
    assert prof["busy_ms_per_step"] == pytest.approx(sum(prof["by_kind_ms"].values()))
    assert prof["by_kind_ms"]["matmul"] > 0 and prof["by_kind_ms"]["attention"] > 0
    assert prof["top"][0]["ms"] >= prof["top"][-1]["ms"]

    memory = result["memory"]
    assert [r["batch"] for r in memory["rows"]] == [1, 2]
    assert all(r["peak_gib"] > 0 for r in memory["rows"])
    assert memory["per_sample_gib"] == pytest.approx(
        memory["rows"][1]["peak_gib"] - memory["rows"][0]["peak_gib"], abs=0.01
    )

    single, multi = result["eval"]["single_scale"], result["eval"]["multi_scale_flip"]
    assert (single["scales"], single["flip"]) == ([1.0], False)
    assert (multi["scales"], multi["flip"]) == ([0.5, 1.0], True)
    assert single["eval_size"] == 64 and single["images_per_s"] > 0

    data = result["data"]
    assert data["dataset"]["dataset"] == "synth-pst900"
    assert data["dataset"]["image_size"] == [64, 36]  # PST900's 16:9 at the requested width
    (row,) = data["rows"]
    assert row["workers"] == 0 and row["samples_per_s"] > 0
    assert row["vs_training"] > 0
    assert "Training step" in done.stdout and "speed-up" in done.stdout


def test_variant_with_an_unknown_key_is_refused_before_measuring(tmp_path: Path) -> None:
    done, out = run_harness(tmp_path, "--what", "train", "--variant", "x:train.compyle=true")
    assert done.returncode == 2
    assert "compyle" in done.stderr and not out.exists()


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    done, out = run_harness(tmp_path, "--what", "train,nonsense")
    assert done.returncode == 2
    assert "nonsense" in done.stderr and not out.exists()


def test_peak_table_matches_the_most_specific_name() -> None:
    """Every listed device gets its own row, also where its name contains another's ("H100 PCIe"
    contains "H100", "L40S" contains "L4"): a reordered table fails here."""
    for key, tflops in PEAK_BF16_TFLOPS:
        assert peak_tflops(f"NVIDIA {key} 80GB").tflops == tflops, key
    assert peak_tflops("NVIDIA H100 PCIe").tflops < peak_tflops("NVIDIA H100 80GB HBM3").tflops
    assert peak_tflops("cpu (x86_64)").tflops is None
    assert peak_tflops("Some Future GPU").tflops is None
    assert peak_tflops("NVIDIA H200", override=790.0).tflops == 790.0


def test_flop_counter_counts_a_known_step() -> None:
    """A linear layer (M x K) @ (K x N): 2MNK forward, 4MNK backward (input and weight grads)."""
    m, k, n = 8, 32, 16
    layer = torch.nn.Linear(k, n, bias=False)
    x = torch.randn(m, k, requires_grad=True)
    total, per_op = count_flops(lambda: layer(x).sum().backward())
    assert total == 6 * m * n * k
    assert sum(per_op.values()) == total


def test_step_timer_measures_real_durations() -> None:
    timer = StepTimer(torch.device("cpu"))
    for pause in (0.02, 0.05, 0.08):
        with timer.step():
            time.sleep(pause)
    stats = summarise(timer.seconds())
    assert stats["n"] == 3 and 0.05 <= stats["median_s"] < 0.07
    assert 0.02 <= stats["min_s"] < stats["median_s"] < stats["max_s"]


def test_startup_import_times_are_read_from_python_importtime():
    from benchmarks.startup import parse_importtime

    sample = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |   torch._C",
            "import time:       900 |    1000000 | torch",
            "import time:        50 |        500 |     peft.utils",
            "import time:       300 |    2500000 |   peft",
            "import time:       200 |    3000000 | sartm.model.lora",
            "import time:        10 |     200000 | mlflow",
            "import time:        70 |     600000 |   torch.fx.experimental.symbolic_shapes",
            "import time:        30 |     700000 | torch._dynamo",
        ]
    )
    out = parse_importtime(sample)
    assert out["total_s"] == pytest.approx(4.9)  # top-level entries only
    assert out["torch_s"] == pytest.approx(1.0)
    assert out["torch_later_s"] == pytest.approx(0.7)  # torch's own, imported while running
    assert out["beyond_torch_s"] == pytest.approx(3.2)
    assert out["peft_s"] == pytest.approx(2.5) and out["mlflow_s"] == pytest.approx(0.2)
