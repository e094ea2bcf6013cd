"""The paper's tables (and a few of ours) from metrics.json files, as Markdown, CSV, LaTeX, HTML.

Each builder returns a `Table`: numbers in percent (mean over seeds, with the standard deviation
beside it when there are several), markers on cells and rows, footnotes, and the headline
comparisons that the summary collects. Conventions (docs/method.md sections 5 and 7):
- ours = the primary checkpoint on test (last epoch; MFNet: best on val); the authors'
  best-on-test number is shown beside it, marked ‡;
- cells of rows the paper got wrong are marked †n with the reason in a footnote; where the
  published value is not SARTM's own no difference is computed;
- Δ = ours - paper;
- a table from synthetic data says so in its title.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sartm import config as cfgmod
from sartm import paths
from sartm.data import builtin
from sartm.report import paper
from sartm.report.results import (
    ReportError,
    RunResult,
    Stat,
    load_results,
    read_benchmark,
)
from sartm.runs import item_spec, leaves, runs_tree

BEST = "‡"
BEST_NOTE = (
    "‡ the authors' protocol: the epoch with the best test score, i.e. model selection on the "
    "test set (docs/method.md section 5); shown for comparison, not as our result."
)
DELTA_NOTE = "Δ = ours (primary checkpoint) - paper, in percentage points."
SYNTHETIC_WARNING = (
    "SYNTHETIC data and a tiny SAM2 pretrained on synthetic scenes, not Meta's weights "
    "(preset {preset}): NOT comparable to the paper"
)


@dataclass
class Headline:
    """One paper-vs-ours number for the summary."""

    table: str
    what: str
    paper: float
    ours: Stat
    best: Stat | None = None
    flag: str = ""  # the footnote marker, when the paper's value is flagged
    note: str = ""

    @property
    def delta(self) -> float:
        return self.ours.mean - self.paper


@dataclass
class Table:
    name: str
    title: str
    values: pd.DataFrame  # float, percent (or the unit in the column name)
    std: pd.DataFrame  # same shape; NaN where there is no spread
    marks: pd.DataFrame  # same shape; "" or markers such as "†1", "‡"
    notes: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    preset: str = "?"
    synthetic: bool = False
    signed: set[str] = field(default_factory=set)  # rows/columns printed with a sign (differences)
    decimals: int = 2
    paper_title: str = ""  # the paper's caption of the table it reproduces ("" for ours only)

    @property
    def full_title(self) -> str:
        if self.synthetic:
            return f"{self.title} - {SYNTHETIC_WARNING.format(preset=self.preset)}"
        return f"{self.title} (preset {self.preset})"


class _Builder:
    """Accumulates rows of (value, std, mark) cells plus numbered footnotes for flagged cells."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, tuple[float, float, str]]] = {}
        self.columns: list[str] = []
        self.notes: list[str] = []
        self._flag_ids: dict[str, str] = {}

    def flag_mark(self, flag: paper.Flag | None) -> str:
        if flag is None:
            return ""
        if flag.note not in self._flag_ids:
            mark = f"†{len(self._flag_ids) + 1}"
            self._flag_ids[flag.note] = mark
            self.notes.append(f"{mark} flagged in the paper: {flag.note}")
        return self._flag_ids[flag.note]

    def set(
        self, row: str, column: str, value: float, std: float = math.nan, mark: str = ""
    ) -> None:
        if column not in self.columns:
            self.columns.append(column)
        self.rows.setdefault(row, {})[column] = (value, std, mark)

    def set_stat(self, row: str, column: str, stat: Stat, mark: str = "") -> None:
        self.set(row, column, stat.mean, stat.std, mark)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        def frame(i: int, empty: Any) -> pd.DataFrame:
            data = {
                row: [cells.get(c, (math.nan, math.nan, ""))[i] for c in self.columns]
                for row, cells in self.rows.items()
            }
            df = pd.DataFrame.from_dict(data, orient="index", columns=self.columns)
            return df.fillna(empty) if i == 2 else df

        return frame(0, math.nan), frame(1, math.nan), frame(2, "")


def _compare(paper_value: float, flag: paper.Flag | None, ours: Stat) -> float:
    """ours - paper, or NaN where there is nothing to compare (missing, or flagged as not SARTM's)."""
    if math.isnan(paper_value) or math.isnan(ours.mean) or (flag and not flag.compare):
        return math.nan
    return ours.mean - paper_value


def _one(results: dict[str, RunResult], logical: str) -> RunResult:
    if logical not in results:
        raise ReportError(f"no results for run {logical!r} (pass --run {logical})")
    return results[logical]


def _finish(
    name: str, spec: dict[str, Any], b: _Builder, used: list[RunResult], **kw: Any
) -> Table:
    values, std, marks = b.frames()
    presets = sorted({r.preset for r in used})
    return Table(
        name=name,
        title=spec["title"],
        values=values,
        std=std,
        marks=marks,
        notes=b.notes + kw.pop("notes", []),
        provenance=[r.describe() for r in used],
        preset="+".join(presets) or "?",
        synthetic=any(r.synthetic for r in used),
        paper_title=paper.table(spec["paper"]).title if "paper" in spec else "",
        **kw,
    )


def per_class(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """Tables I-III: published rows, the paper's SARTM row, ours, ours best-on-test, difference."""
    ((label, logical),) = spec["runs"].items()
    ours = _one(results, logical)
    pt = paper.table(spec["paper"])
    rename = {**{c: c for c in pt.columns}, **spec.get("column_names", {})}
    columns = [*ours.classes, "mIoU"]
    unknown = [c for c in pt.columns if rename[c] not in columns]
    if unknown:
        raise ReportError(
            f"{ours.files[0]}: classes {ours.classes} lack the paper's columns {unknown}"
        )
    b = _Builder()
    b.columns = list(columns)
    for row, cells in pt.rows.items():
        shown = f"{row} (paper)" if row == label else row
        for col, value in cells.items():
            b.set(shown, rename[col], value, mark=b.flag_mark(pt.flag(row, col)))
    ours_row = f"{label} (ours, {ours.checkpoint_kind} checkpoint)"
    best_row = f"{label} (ours, best on test {BEST})"
    delta_row = "Δ ours - paper"
    stats = {c: ours.stat("test", "iou", i) for i, c in enumerate(ours.classes)}
    stats["mIoU"] = ours.stat("test", "miou")
    for col, stat in stats.items():
        b.set_stat(ours_row, col, stat)
    if ours.has_best:
        for i, col in enumerate(ours.classes):
            b.set_stat(best_row, col, ours.stat("test_best", "iou", i))
        b.set_stat(best_row, "mIoU", ours.stat("test_best", "miou"))
    inverse = {v: k for k, v in rename.items()}
    headlines = []
    for col, stat in stats.items():
        pcol = inverse.get(col, col)
        flag = pt.flag(label, pcol)
        published = pt.value(label, pcol)
        b.set(delta_row, col, _compare(published, flag, stat), mark=b.flag_mark(flag))
        if col == "mIoU":
            best = ours.stat("test_best", "miou") if ours.has_best else None
            headlines.append(
                Headline(
                    name,
                    f"{label} mIoU",
                    published,
                    stat,
                    best,
                    b.flag_mark(flag),
                    flag.note if flag else "",
                )
            )
    notes = [DELTA_NOTE] + ([BEST_NOTE] if ours.has_best else []) + list(pt.notes)
    missing = [c for c in ours.classes if c not in {rename[p] for p in pt.columns}]
    if missing:
        notes.append(f"The paper does not show: {', '.join(missing)} (– in its rows).")
    return _finish(name, spec, b, [ours], notes=notes, headlines=headlines, signed={delta_row})


def _paper_vs_ours(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    rows: list[tuple[str, str, str]],  # (shown row, paper row key, logical run)
    metrics: list[tuple[str, str, tuple[str, ...]]],  # (paper column, shown name, metrics keys)
) -> Table:
    """Rows of (paper, ours, Δ) per metric: Tables IV, VI, VII, VIII."""
    pt = paper.table(spec["paper"])
    b = _Builder()
    used, headlines = [], []
    any_best = all(_one(results, lg).has_best for _, _, lg in rows)
    for shown, prow, logical in rows:
        r = _one(results, logical)
        used.append(r)
        for pcol, metric, keys in metrics:
            flag = pt.flag(prow, pcol)
            mark = b.flag_mark(flag)
            published = pt.value(prow, pcol)
            stat = r.stat("test", *keys)
            b.set(shown, f"paper {pcol}", published, mark=mark)
            b.set_stat(shown, f"ours {metric}", stat)
            b.set(shown, f"Δ {metric}", _compare(published, flag, stat), mark=mark)
            if any_best:
                b.set_stat(shown, f"ours {metric} best {BEST}", r.stat("test_best", *keys))
            if metric == "mIoU":
                best = r.stat("test_best", *keys) if r.has_best else None
                headlines.append(
                    Headline(
                        name,
                        shown,
                        published,
                        stat,
                        best,
                        mark,
                        flag.note if flag else "",
                    )
                )
    notes = [DELTA_NOTE] + ([BEST_NOTE] if any_best else []) + list(pt.notes)
    unique = list({id(r): r for r in used}.values())
    signed = {c for c in b.columns if c.startswith("Δ")}
    return _finish(name, spec, b, unique, notes=notes, headlines=headlines, signed=signed)


def rank(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    rows = [(f"rank {r}", r, lg) for r, lg in spec["runs"].items()]
    metrics = [("mAcc", "mAcc", ("macc",)), ("mIoU", "mIoU", ("miou",))]
    return _paper_vs_ours(name, spec, results, rows, metrics)


def losses(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    pt = paper.table(spec["paper"])
    rows = [(pt.label(row), row, lg) for row, lg in spec["runs"].items()]
    metrics = [("mIoU", "mIoU", ("miou",)), ("F1", "mF1", ("mf1",)), ("Acc", "mAcc", ("macc",))]
    return _paper_vs_ours(name, spec, results, rows, metrics)


def weights(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    rows = [
        (f"{w}={v}", paper._sweep_key(w, v), lg)
        for w, sweep in spec["runs"].items()
        for v, lg in sweep.items()
    ]
    return _paper_vs_ours(name, spec, results, rows, [("mIoU", "mIoU", ("miou",))])


def heads(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    rows = [(row, row, lg) for row, lg in spec["runs"].items()]
    return _paper_vs_ours(name, spec, results, rows, [("mIoU", "mIoU", ("miou",))])


def components(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """Table V: rows of variants, per dataset (paper, ours, Δ)."""
    pt = paper.table(spec["paper"])
    b = _Builder()
    used, headlines = [], []
    for row, per_dataset in spec["runs"].items():
        shown = pt.label(row)
        for ds, logical in per_dataset.items():
            r = _one(results, logical)
            used.append(r)
            flag = pt.flag(row, ds)
            mark = b.flag_mark(flag)
            published = pt.value(row, ds)
            stat = r.stat("test", "miou")
            b.set(shown, f"{ds} paper", published, mark=mark)
            b.set_stat(shown, f"{ds} ours", stat)
            b.set(shown, f"{ds} Δ", _compare(published, flag, stat), mark=mark)
            best = r.stat("test_best", "miou") if r.has_best else None
            headlines.append(
                Headline(
                    name,
                    f"{shown} ({ds})",
                    published,
                    stat,
                    best,
                    mark,
                    flag.note if flag else "",
                )
            )
    signed = {c for c in b.columns if c.endswith("Δ")}
    return _finish(
        name, spec, b, used, notes=[DELTA_NOTE, *pt.notes], headlines=headlines, signed=signed
    )


def subsets(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """MFNet day / night (test_day / test_night are subsets of test)."""
    b = _Builder()
    used = []
    for row, logical in spec["runs"].items():
        r = _one(results, logical)
        used.append(r)
        b.set_stat(row, "test mIoU", r.stat("test", "miou"))
        for subset in ("day", "night"):
            b.set_stat(row, f"{subset} mIoU", r.stat("subsets", subset, "miou"))
    return _finish(name, spec, b, used)


def robustness(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """Both inputs vs one input blanked at test time."""
    b = _Builder()
    used = []
    for row, logical in spec["runs"].items():
        r = _one(results, logical)
        used.append(r)
        both = r.stat("test", "miou")
        b.set_stat(row, "RGB + thermal", both)
        for key, shown in (("thermal_blanked", "thermal blanked"), ("rgb_blanked", "RGB blanked")):
            stat = r.stat("robustness", key, "miou")
            b.set_stat(row, shown, stat)
            b.set(row, f"Δ {shown}", stat.mean - both.mean)
    signed = {c for c in b.columns if c.startswith("Δ")}
    notes = ["Δ = blanked - both inputs, in percentage points."]
    return _finish(name, spec, b, used, notes=notes, signed=signed)


def scores(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """Test mIoU / mAcc / mF1 per run (e.g. the demo's pretrained vs random encoder)."""
    b = _Builder()
    used = []
    for row, logical in spec["runs"].items():
        r = _one(results, logical)
        used.append(r)
        for key, shown in (("miou", "mIoU"), ("macc", "mAcc"), ("mf1", "mF1")):
            b.set_stat(row, shown, r.stat("test", key))
    return _finish(name, spec, b, used, notes=list(spec.get("notes", [])))


def classes(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    """A dataset of the user's: per-class IoU and mIoU of each run on it (no published rows)."""
    b = _Builder()
    used = list(results.values())
    if not used:
        raise ReportError(f"table {name}: no results given")
    b.columns = [*used[0].classes, "mIoU"]
    for r in used:
        if r.classes != used[0].classes:
            raise ReportError(f"{r.files[0]}: classes differ from {used[0].files[0]}")
        row = r.logical.split("/", 1)[1]
        for i, column in enumerate(r.classes):
            b.set_stat(row, column, r.stat("test", "iou", i))
        b.set_stat(row, "mIoU", r.stat("test", "miou"))
    return _finish(name, spec, b, used)


def params(name: str, spec: dict[str, Any], results: dict[str, RunResult]) -> Table:
    b = _Builder()
    used = []
    for row, logical in spec["runs"].items():
        r = _one(results, logical)
        used.append(r)
        total = r.stat("params", "total", scale=1e-6)
        trainable = r.stat("params", "trainable", scale=1e-6)
        b.set(row, "total (M)", total.mean)
        b.set(row, "trainable (M)", trainable.mean)
        b.set(row, "trainable (%)", 100 * trainable.mean / total.mean if total.mean else math.nan)
    return _finish(name, spec, b, used, decimals=3)


def train_time(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    results_root: Path,
) -> Table:
    """Wall-clock time per job: Snakemake's benchmark files, else metrics.json's train_time_s."""
    b = _Builder()
    used = []
    from_metrics = False
    for logical, r in results.items():
        used.append(r)
        train, evaluate, rss = [], [], []
        for run_id, m in zip(r.run_ids, r.metrics):
            bench = read_benchmark(paths.benchmark_file("train", run_id, results_root))
            if bench is None:
                from_metrics = True
                train.append(float(m.get("train_time_s", math.nan)))
            else:
                train.append(bench["s"])
                rss.append(bench.get("max_rss", math.nan) / 1024)
            ebench = read_benchmark(paths.benchmark_file("evaluate", run_id, results_root))
            evaluate.append(ebench["s"] if ebench else math.nan)
        b.set_stat(logical, "train (min)", Stat.of([t / 60 for t in train]))
        b.set_stat(logical, "evaluate (min)", Stat.of([t / 60 for t in evaluate]))
        b.set_stat(logical, "train max RSS (GB)", Stat.of(rss))
    notes = ["Times are wall-clock seconds of the whole job (start-up included) / 60."]
    if from_metrics:
        notes.append(
            "Where no Snakemake benchmark file exists the training time is metrics.json's train_time_s."
        )
    return _finish(name, spec, b, used, notes=notes)


BUILDERS: dict[str, Callable[..., Table]] = {
    "per_class": per_class,
    "rank": rank,
    "components": components,
    "losses": losses,
    "weights": weights,
    "heads": heads,
    "subsets": subsets,
    "robustness": robustness,
    "params": params,
    "scores": scores,
    "classes": classes,
}


def build(name: str, results: dict[str, RunResult], results_root: Path) -> Table:
    group, spec = item_spec(name)
    if group != "tables":
        raise ReportError(f"{name!r} is a figure, not a table")
    if spec["kind"] == "time":
        return train_time(name, spec, results, results_root)
    if spec["kind"] not in BUILDERS:
        raise ReportError(f"table {name}: unknown kind {spec['kind']!r}")
    return BUILDERS[spec["kind"]](name, spec, results)


# --- rendering ---------------------------------------------------------------------------------


def _cell(value: float, std: float, mark: str, *, signed: bool, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "–"
    else:
        text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
        if not math.isnan(std):
            text += f" ± {std:.{decimals}f}"
    return f"{text} {mark}" if mark else text


def formatted(table: Table) -> pd.DataFrame:
    """The table as display strings (value ± std, markers)."""
    out = table.values.copy().astype(object)
    for col in table.values.columns:
        for row in table.values.index:
            out.loc[row, col] = _cell(
                table.values.loc[row, col],
                table.std.loc[row, col],
                table.marks.loc[row, col],
                signed=col in table.signed or row in table.signed,
                decimals=table.decimals,
            )
    return out


def _notes(table: Table) -> list[str]:
    if not table.std.isna().all(axis=None):
        return [
            *table.notes,
            "Values are mean ± standard deviation over seeds; values without ± come from one "
            "seed (the preset's summary.md lists the seed-to-seed spread).",
        ]
    return list(table.notes)


def to_markdown(table: Table) -> str:
    lines = [f"# {table.full_title}", "", formatted(table).to_markdown(disable_numparse=True), ""]
    lines += [f"- {note}" for note in _notes(table)]
    lines += ["", "Runs: " + "; ".join(table.provenance), ""]
    return "\n".join(lines)


PAGE_STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; color: #222; }
h1 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
thead th { background: #eee; }
tbody th { text-align: left; }
tbody tr:nth-child(even) { background: #f7f7f7; }
li, p { max-width: 60em; }
"""  # every HTML page of the report (tables, summary) looks alike

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body>
<h1>{title}</h1>
{table}
<ul>
{notes}
</ul>
<p>Runs: {runs}</p>
</body></html>
"""


def to_html(table: Table) -> str:
    """A standalone page, so that Snakemake's report shows the table inside the report."""
    return _PAGE.format(
        style=PAGE_STYLE,
        title=html.escape(table.full_title),
        table=formatted(table).to_html(border=0),
        notes="\n".join(f"<li>{html.escape(n)}</li>" for n in _notes(table)),
        runs=html.escape("; ".join(table.provenance)),
    )


def to_csv_frame(table: Table) -> pd.DataFrame:
    """Numbers (not strings) for machines: std columns where seeds vary, markers per row."""
    df = table.values.copy()
    for col in table.values.columns:
        if table.std[col].notna().any():
            df[f"{col} std"] = table.std[col]
    df["marks"] = [
        " ".join(f"{c}:{m}" for c, m in table.marks.loc[row].items() if m) for row in df.index
    ]
    df["preset"] = table.preset
    df["synthetic"] = table.synthetic
    df.index.name = "row"
    return df


_LATEX = {
    "†": r"\textsuperscript{\dag}",
    "‡": r"\textsuperscript{\ddag}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
}


def to_latex(table: Table) -> str:
    body = formatted(table).to_latex(
        escape=True, caption=table.full_title, label=f"tab:{table.name}"
    )
    notes = "\n".join(f"% {n}" for n in table.notes)
    text = body + notes + "\n"
    for char, tex in _LATEX.items():
        text = text.replace(char, tex)
    return text


def write(table: Table, out_dir: Path) -> list[Path]:
    """<out_dir>/<name>.{md,csv,tex,html}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        out_dir / f"{table.name}.md": to_markdown(table),
        out_dir / f"{table.name}.csv": to_csv_frame(table).to_csv(),
        out_dir / f"{table.name}.tex": to_latex(table),
        out_dir / f"{table.name}.html": to_html(table),
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def make(
    name: str,
    mapping: dict[str, list[str]],
    *,
    results_root: Path,
    out_dir: Path,
) -> list[Path]:
    """Load the runs a table needs (`mapping`: logical -> run ids), build and write it."""
    needed = runs_tree(name)
    results = load_results(mapping, results_root)
    if isinstance(needed, dict):
        missing = [lg for lg in leaves(needed) if lg not in results]
        if missing:
            raise ReportError(f"table {name}: no results given for {missing}")
    return write(build(name, results, results_root), out_dir)


# --- what the Snakemake report says around the tables and figures -------------------------------


def preset_note(params: dict[str, Any], preset: str | None = None) -> str:
    """The preset's data and SAM2 encoder, for the captions (written before any result is read)."""
    preset = preset or params["preset"]
    base = [cfgmod.resolve(params, dataset=ds, preset=preset) for ds in builtin.names()]
    sources = ", ".join(c.data.dataset for c in base)
    synthetic = any(c.synthetic for c in base)
    data = f"SYNTHETIC stand-in data ({sources})" if synthetic else f"real data ({sources})"
    model = base[0].model
    if any(cfgmod.uses_stand_in(c, params) for c in base):
        encoder = (
            "the SAM2 encoder is the synthetic stand-in, a tiny SAM2 that the pipeline pretrained "
            "on synthetic scenes (not Meta's weights)"
        )
    elif model.checkpoint is None:
        encoder = f"a randomly initialised SAM2 encoder ({model.backbone})"
    else:
        encoder = f"SAM2 encoder {model.backbone} from {model.checkpoint}"
    verdict = ": not comparable to the paper" if synthetic else ""
    return f"Preset {preset}: {data}; {encoder}{verdict}."


def report_section(name: str) -> str:
    """The report's subcategory of a table or figure: the paper's number where it has one."""
    _, spec = item_spec(name)
    if match := re.match(r"(Table [IVX]+|Figure \d+):", spec["title"]):
        return match.group(1)
    return "Training curves" if spec["kind"] == "curves" else "Beyond the paper"
