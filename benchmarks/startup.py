"""Fixed cost per process: what `sartm train` and `sartm evaluate` spend importing, beyond torch.

The demo starts one process per training job and one per evaluation, so import time is paid
about 66 times. Each command runs for real on a tiny synthetic dataset under
`python -X importtime`; the import total is the sum of the top-level entries, and "beyond torch"
subtracts torch's own subtree (what any torch program pays). The heaviest packages are listed so
that a regression names its cause.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
HEAVY = ("torch", "peft", "transformers", "mlflow", "torchvision", "sam2", "matplotlib", "sklearn")
# peft and transformers: sartm.model.lora no longer imports peft; listed so that a return shows.


def parse_importtime(stderr: str) -> dict[str, float]:
    """{"total_s", "torch_s", "torch_later_s", "beyond_torch_s", <package>_s...} from
    -X importtime output. torch_later_s: parts of torch first imported while the command runs
    (torch.optim's first optimiser imports torch._dynamo), which any torch program doing the same
    pays; they count as torch's, not as beyond torch."""
    total = later = 0.0
    packages: dict[str, float] = {}
    for match in LINE.finditer(stderr):
        cumulative, indent, name = int(match.group(2)) / 1e6, len(match.group(3)), match.group(4)
        if indent == 1:
            total += cumulative
            later += cumulative if name.startswith("torch.") else 0.0
        if name in HEAVY and name not in packages:  # a package's first import is its whole cost
            packages[name] = cumulative
    out = {"total_s": total, "torch_s": packages.get("torch", 0.0), "torch_later_s": later}
    out["beyond_torch_s"] = total - out["torch_s"] - later
    out.update({f"{k}_s": v for k, v in packages.items() if k != "torch"})
    return out


def _commands(work: Path) -> dict[str, list[str]]:
    data = work / "data"
    common = [
        "--preset", "ci", "--dataset", "pst900", "--run", "no-language",
        "--set", f"data.root={data}", "--set", "model.checkpoint=null",
        "--set", "train.epochs=1", "--set", "data.crop_size=64", "--set", "data.eval_size=64",
        "--set", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        "--set", f"tracking.artifact_root={work / 'mlartifacts'}",
    ]  # fmt: skip
    return {"sartm train": ["train", *common, "--quiet"], "sartm evaluate": ["evaluate", *common]}


def measure_startup(root: Path, repeats: int = 3) -> dict[str, Any]:
    """Per command: median import seconds (total, torch, beyond torch, heavy packages) and
    median process wall time, over `repeats` runs on a 4-image synthetic PST900."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "sartm", "data", "synth", "synth-pst900", "--params",
             str(root / "params.yaml"), "--out", str(work / "data" / "processed" / "synth-pst900"),
             "--width", "64", "--samples-train", "8", "--samples-test", "2"],
            cwd=work, check=True, capture_output=True,
        )  # fmt: skip
        for label, args in _commands(work).items():
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-X", "importtime", "-m", "sartm", *args,
                     "--params", str(root / "params.yaml")],
                    cwd=work, capture_output=True, text=True,
                )  # fmt: skip
                wall = time.perf_counter() - started
                if done.returncode != 0:
                    out[label] = {"error": done.stderr.strip()[-600:]}
                    break
                runs.append({**parse_importtime(done.stderr), "wall_s": wall})
            else:
                out[label] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    return out
