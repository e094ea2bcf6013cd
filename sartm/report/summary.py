"""results/summary.md: the paper's headline numbers beside ours, flagged rows marked.

Built from the same table builders (so the two can never disagree), reading the same
metrics.json files; the tables each summary line comes from are listed in experiments.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sartm import paths
from sartm.report import tables
from sartm.report.results import load_results
from sartm.report.runs import experiments, leaves, runs_tree

SUMMARY_FILE = paths.RESULTS / "summary.md"


def summary_tables() -> list[str]:
    return list(experiments()["summary"]["tables"])


def summary_runs() -> list[str]:
    """Every logical run the summary reads."""
    return list(dict.fromkeys(lg for t in summary_tables() for lg in leaves(runs_tree(t))))


def _num(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def build(mapping: dict[str, list[str]], results_root: Path = paths.RESULTS) -> str:
    results = load_results(mapping, results_root)
    built = [tables.build(name, results, results_root) for name in summary_tables()]
    groups, notes = [], {}  # flag note -> its marker in the summary
    for table in built:
        rows = []
        for h in table.headlines:
            mark = notes.setdefault(h.note, f"†{len(notes) + 1}") if h.flag else ""
            ours = _num(h.ours.mean) + (
                f" ± {h.ours.std:.2f}" if not math.isnan(h.ours.std) else ""
            )
            rows.append(
                {
                    "result": h.what,
                    "paper": f"{_num(h.paper)} {mark}".strip(),
                    "ours": ours,
                    "Δ": _num(h.delta, signed=True),
                    f"ours, best on test {tables.BEST}": _num(h.best.mean) if h.best else "–",
                }
            )
        groups += [
            f"## {table.paper_title or table.title}",
            "",
            pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
            "",
            f"Full table: results/tables/{table.name}.md",
            "",
        ]
    presets = sorted({t.preset for t in built})
    synthetic = any(t.synthetic for t in built)
    head = "# SARTM reproduction: paper vs ours (mIoU %, test sets)"
    if synthetic:
        head += f"\n\n**{tables.SYNTHETIC_WARNING.format(preset='+'.join(presets))}.**"
    else:
        head += f"\n\nPreset: {'+'.join(presets)}."
    lines = [
        head,
        "",
        *groups,
        "## Notes",
        "",
        "- Ours = the primary checkpoint (last epoch; MFNet: best on val) on the test set; "
        + tables.DELTA_NOTE,
        "- " + tables.BEST_NOTE,
    ]
    lines += [f"- {mark} flagged in the paper: {note}" for note, mark in notes.items()]
    lines += _seed_spread(results)
    return "\n".join([*lines, ""])


def _seed_spread(results: dict) -> list[str]:
    """The runs trained with several seeds: how far apart the seeds land, so that a reader can
    tell an effect between two rows from noise."""
    lines = []
    for logical, r in results.items():
        if len(r.run_ids) < 2:
            continue
        values = [100 * float(m["test"]["miou"]) for m in r.metrics]
        stat = r.stat("test", "miou")
        lines.append(
            f"- {logical}: test mIoU {', '.join(f'{v:.2f}' for v in values)} over "
            f"{len(values)} seeds (mean {stat.mean:.2f} ± {stat.std:.2f}, range "
            f"{max(values) - min(values):.2f} points)"
        )
    if not lines:
        return []
    head = (
        "Seed-to-seed spread (test mIoU %, the same run trained with other seeds); a "
        "difference between two rows smaller than this is noise:"
    )
    return ["", head, "", *lines]


def write(
    mapping: dict[str, list[str]],
    *,
    results_root: Path = paths.RESULTS,
    out: Path = SUMMARY_FILE,
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build(mapping, results_root))
    return out
