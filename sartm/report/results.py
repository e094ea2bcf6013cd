"""Reading what the pipeline produced: one `RunResult` per logical run, over its seeds.

Tables and figures read only `eval/<run_id>/metrics.json` under the preset's results folder (the
evaluation contract), the Snakemake benchmark files and the training side files named in
`sartm.paths`; every missing or malformed file is an error naming it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sartm import paths
from sartm.errors import SartmError


class ReportError(SartmError, RuntimeError):
    """A table or figure cannot be built; the message names the file or setting at fault."""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std NaN with a single seed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        arr = np.asarray([v for v in values if v is not None], dtype=float)
        if arr.size == 0 or np.isnan(arr).all():
            return cls(math.nan, math.nan, 0)
        std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
        return cls(float(arr.mean()), std, int(arr.size))


@dataclass
class RunResult:
    """The evaluations of one logical run (one metrics.json per seed)."""

    logical: str
    run_ids: list[str]
    files: list[Path]
    metrics: list[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        return self.metrics[0]

    @property
    def classes(self) -> list[str]:
        return list(self.first["classes"])

    @property
    def preset(self) -> str:
        return str(self.first.get("preset", "?"))

    @property
    def synthetic(self) -> bool:
        return any(bool(m.get("synthetic")) for m in self.metrics)

    @property
    def source(self) -> str:
        return str(self.first.get("source", self.first.get("dataset", "?")))

    @property
    def checkpoint_kind(self) -> str:
        return str(self.first.get("checkpoint", {}).get("kind", "last"))

    @property
    def has_best(self) -> bool:
        return all(isinstance(m.get("test_best"), dict) for m in self.metrics)

    def stat(self, *keys: str | int, scale: float = 100.0) -> Stat:
        """Mean/std over seeds of metrics[keys...] (e.g. "test", "iou", 3), in percent."""
        values = []
        for m, f in zip(self.metrics, self.files):
            node: Any = m
            for key in keys:
                try:
                    node = node[key]
                except (KeyError, IndexError, TypeError):
                    raise ReportError(
                        f"{f}: no {'.'.join(map(str, keys))} (needed by this table)"
                    ) from None
            values.append(None if node is None else float(node) * scale)
        return Stat.of(values)

    def describe(self) -> str:
        """One provenance line: job ids, config hashes, checkpoints."""
        parts = []
        for run_id, m in zip(self.run_ids, self.metrics):
            ck = m.get("checkpoint", {})
            parts.append(
                f"{run_id} (config {m.get('config_hash', '?')}, {ck.get('kind', '?')} checkpoint"
                f"{', epoch ' + str(ck['epoch']) if 'epoch' in ck else ''})"
            )
        alias = "" if self.run_ids == [self.logical] else f" = {', '.join(parts)}"
        return f"{self.logical}{alias}" if alias else ", ".join(parts)


def read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"{path}: missing; evaluate the run first (sartm evaluate --run ...)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from exc
    for key in ("classes", "test"):
        if key not in data:
            raise ReportError(f"{path}: no {key!r} key; not an evaluation metrics.json")
    return data


def load_results(mapping: dict[str, list[str]], results_root: Path) -> dict[str, RunResult]:
    """{logical run: RunResult} for a {logical: [run ids]} mapping (see runs.job_map)."""
    out = {}
    for logical, run_ids in mapping.items():
        files = [paths.metrics_file(r, results_root) for r in run_ids]
        metrics = [read_metrics(f) for f in files]
        for f, m in zip(files[1:], metrics[1:]):
            if m["classes"] != metrics[0]["classes"]:
                raise ReportError(f"{f}: classes differ from {files[0]} (seeds of one run)")
        out[logical] = RunResult(logical, list(run_ids), files, metrics)
    return out


def read_benchmark(path: Path) -> dict[str, float] | None:
    """Snakemake's benchmark TSV (columns s, max_rss, ...), averaged over its repeats; None if absent."""
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ReportError(f"{path}: empty benchmark file")
    out = {}
    for key in ("s", "max_rss", "cpu_time"):
        values = [float(r[key]) for r in rows if r.get(key) not in (None, "", "NA", "-")]
        if values:
            out[key] = float(np.mean(values))
    return out


def write_scores(mapping: dict[str, list[str]], results_root: Path, out: Path) -> Path:
    """{run id: test mIoU %} of every job in `mapping`: the one metrics file DVC shows
    (`dvc exp show`), instead of every key of every metrics.json."""
    scores = {}
    for run_ids in mapping.values():
        for run_id in run_ids:
            path = paths.metrics_file(run_id, results_root)
            scores[run_id] = round(100 * float(read_metrics(path)["test"]["miou"]), 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(scores, indent=2) + "\n")
    return out
