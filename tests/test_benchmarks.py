"""Smoke test of the benchmark harness: one tiny step of everything on the CPU, valid JSON out.

No timing is asserted (the machine is shared); the test checks that the real measurement code
runs end to end and that the figures written are consistent with each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks folder sits beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.device import peak_tflops  # noqa: E402

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
    done, out = run_harness(
        tmp_path,
        "--steps", "1", "--warmup", "0", "--ms-steps", "1",
        "--what", "train,memory,eval,data", "--compare-baseline", "--workers", "0",
        "--data-width", "64", "--variant", "cl:train.channels_last=true", "--profile", "1",
        "--memory-batches", "1,2",
    )  # fmt: skip
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
    for r in (opt, base):
        assert r["step"]["n"] == 1 and r["step"]["median_s"] > 0
        assert r["images_per_s"] == pytest.approx(2 / r["step"]["median_s"])
        assert r["memory_kind"] == "cpu peak resident set"
        assert r["memory_mb"] == pytest.approx(r["static_mb"] + r["step_peak_mb"], abs=0.11)
        assert r["mfu"] is None
        assert set(r["last_losses"]) >= {"loss", "ce_s0"}
    # FLOPs are counted once, including Hiera's CPU attention kernel, and reused by the baseline
    assert opt["flops_per_step"] > 0 and base["flops_per_step"] == opt["flops_per_step"]
    assert any("scaled_dot_product" in op for op in opt["flops_by_op"])
    assert opt["tflops"] == pytest.approx(opt["flops_per_step"] / opt["step"]["median_s"] / 1e12)
    assert train["speedup"] == pytest.approx(base["step"]["median_s"] / opt["step"]["median_s"])
    # an extra variant is timed beside the others, with its own switches and speed-up
    extra = train["cl"]
    assert extra["switches"]["channels_last"] and not opt["switches"]["channels_last"]
    assert extra["speedup"] == pytest.approx(base["step"]["median_s"] / extra["step"]["median_s"])
    assert extra["flops_per_step"] == opt["flops_per_step"]
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
    assert row["vs_training"] == pytest.approx(row["samples_per_s"] / opt["images_per_s"])
    assert "Training step" in done.stdout and "speed-up" in done.stdout


def test_variant_with_an_unknown_key_is_refused_before_measuring(tmp_path: Path) -> None:
    done, out = run_harness(tmp_path, "--what", "train", "--variant", "x:train.compyle=true")
    assert done.returncode == 2
    assert "compyle" in done.stderr and not out.exists()


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    done, out = run_harness(tmp_path, "--what", "train,nonsense")
    assert done.returncode == 2
    assert "nonsense" in done.stderr and not out.exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H200", 989.4),
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("cpu (x86_64)", None),
        ("Some Future GPU", None),
    ],
)
def test_peak_table_matches_the_most_specific_name(name: str, expected: float | None) -> None:
    assert peak_tflops(name).tflops == expected
    assert peak_tflops(name, override=790.0).tflops == 790.0


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
        ]
    )
    out = parse_importtime(sample)
    assert out["total_s"] == pytest.approx(4.2)  # top-level entries only
    assert out["torch_s"] == pytest.approx(1.0)
    assert out["beyond_torch_s"] == pytest.approx(3.2)
    assert out["peft_s"] == pytest.approx(2.5) and out["mlflow_s"] == pytest.approx(0.2)
