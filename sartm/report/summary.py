"""The summary: the paper's headline numbers beside ours, flagged rows marked.

Written twice from one `Summary`: `summary.md` (Markdown, for a terminal or a repository browser)
and `summary.html` beside it (`html_file`: same folder, same stem; a standalone page in the
tables' style, which Snakemake's report shows inside the report, where Markdown is raw text).
Built from the same table builders (so the summary and the tables can never disagree), reading
the same metrics.json files; the tables each summary line comes from are listed in
experiments.yaml.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sartm import paths
from sartm.report import tables
from sartm.report.results import load_results
from sartm.runs import summary_runs, summary_tables  # noqa: F401 (summary.summary_runs)

SUMMARY_FILE = paths.RESULTS / "summary.md"
TITLE = "SARTM reproduction: paper vs ours (mIoU %, test sets)"
SPREAD_HEAD = (
    "Seed-to-seed spread (test mIoU %, the same run trained with other seeds); a "
    "difference between two rows smaller than this is noise:"
)
FLAG = re.compile(r"†\d+")  # a flagged row's marker in the paper column; its note says why


def html_file(out: Path) -> Path:
    """The HTML page written beside the Markdown summary `out`: same folder, same stem."""
    return Path(out).with_suffix(".html")


def files(out: Path) -> list[Path]:
    """Everything `write(..., out=out)` writes: the Markdown summary and its HTML page."""
    return [Path(out), html_file(out)]


@dataclass
class Group:
    """The headlines of one table: a section of the summary."""

    title: str
    table: str  # the table's name: its full version is tables/<table>.md beside the summary
    rows: pd.DataFrame  # display strings, one row per headline


@dataclass
class Summary:
    presets: list[str]
    synthetic: bool
    groups: list[Group]
    flags: dict[str, str] = field(default_factory=dict)  # a flagged row's note -> its marker †n
    spread: list[str] = field(default_factory=list)  # one line per run trained with >1 seed

    @property
    def preset_line(self) -> str:
        presets = "+".join(self.presets)
        if self.synthetic:
            return f"{tables.SYNTHETIC_WARNING.format(preset=presets)}."
        return f"Preset: {presets}."

    @property
    def notes(self) -> list[str]:
        return [
            "Ours = the primary checkpoint (last epoch; MFNet: best on val) on the test set; "
            + tables.DELTA_NOTE,
            tables.BEST_NOTE,
            *(f"{mark} flagged in the paper: {note}" for note, mark in self.flags.items()),
        ]


def _num(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def collect(mapping: dict[str, list[str]], results_root: Path = paths.RESULTS) -> Summary:
    """Read the runs (`mapping`: logical -> run ids) and build the summary's tables."""
    results = load_results(mapping, results_root)
    built = [tables.build(name, results, results_root) for name in summary_tables()]
    groups, flags = [], {}
    for table in built:
        rows = []
        for h in table.headlines:
            mark = flags.setdefault(h.note, f"†{len(flags) + 1}") if h.flag else ""
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
        groups.append(Group(table.paper_title or table.title, table.name, pd.DataFrame(rows)))
    return Summary(
        presets=sorted({t.preset for t in built}),
        synthetic=any(t.synthetic for t in built),
        groups=groups,
        flags=flags,
        spread=_seed_spread(results),
    )


def _full_table(group: Group) -> str:
    """Where the whole table is, relative to the summary (the tables folder sits beside it)."""
    return f"tables/{group.table}.md (beside this summary)"


def to_markdown(summary: Summary) -> str:
    preset = f"**{summary.preset_line}**" if summary.synthetic else summary.preset_line
    lines = [f"# {TITLE}", "", preset, ""]
    for group in summary.groups:
        lines += [
            f"## {group.title}",
            "",
            group.rows.to_markdown(index=False, disable_numparse=True),
            "",
            f"Full table: {_full_table(group)}",
            "",
        ]
    lines += ["## Notes", "", *(f"- {note}" for note in summary.notes)]
    if summary.spread:
        lines += ["", SPREAD_HEAD, "", *(f"- {line}" for line in summary.spread)]
    return "\n".join([*lines, ""])


_SUMMARY_STYLE = """
h2 { font-size: 1em; margin-top: 1.6em; }
thead th:first-child, tbody td:first-child { text-align: left; }
p.warning { font-weight: bold; color: #a00; }
a.flag { color: #a00; text-decoration: none; font-weight: bold; }
tbody tr:has(a.flag) { background: #fff4e5; }
p.full { color: #666; margin-top: 0; }
"""


def _flag_id(mark: str) -> str:
    return "flag-" + mark.lstrip("†")


def _with_flag_links(text: str) -> str:
    """Escaped text whose †n markers (flagged rows) link to their notes."""
    return FLAG.sub(
        lambda m: f'<a class="flag" href="#{_flag_id(m.group(0))}">{m.group(0)}</a>',
        html.escape(text),
    )


def _table_html(rows: pd.DataFrame) -> str:
    """One group's table, written as the tables' pages write theirs (pandas' `to_html`), with
    each †n marker a link to its note (the style highlights the rows that hold one)."""
    linked = rows.map(lambda v: _with_flag_links(str(v)))
    linked.columns = [html.escape(str(c)) for c in rows.columns]
    return linked.to_html(index=False, border=0, escape=False)


def to_html(summary: Summary) -> str:
    """A standalone, styled page with the Markdown summary's content."""
    preset = summary.preset_line
    parts = [
        f"<h1>{html.escape(TITLE)}</h1>",
        f'<p class="warning">{html.escape(preset)}</p>'
        if summary.synthetic
        else f"<p>{html.escape(preset)}</p>",
    ]
    for group in summary.groups:
        parts += [
            f"<h2>{html.escape(group.title)}</h2>",
            _table_html(group.rows),
            f'<p class="full">Full table: {html.escape(_full_table(group))}</p>',
        ]
    flag_ids = {mark: _flag_id(mark) for mark in summary.flags.values()}
    notes = []
    for note in summary.notes:
        mark = note.split(" ", 1)[0]
        attr = f' id="{flag_ids[mark]}"' if mark in flag_ids else ""
        notes.append(f"<li{attr}>{html.escape(note)}</li>")
    parts += ["<h2>Notes</h2>", "<ul>", *notes, "</ul>"]
    if summary.spread:
        parts += [f"<p>{html.escape(SPREAD_HEAD)}</p>", "<ul>"]
        parts += [f"<li>{html.escape(line)}</li>" for line in summary.spread]
        parts.append("</ul>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(TITLE)}</title>",
            f"<style>{tables.PAGE_STYLE}{_SUMMARY_STYLE}</style></head>",
            "<body>",
            *parts,
            "</body></html>",
            "",
        ]
    )


def build(mapping: dict[str, list[str]], results_root: Path = paths.RESULTS) -> str:
    """The Markdown summary."""
    return to_markdown(collect(mapping, results_root))


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
            f"{logical}: test mIoU {', '.join(f'{v:.2f}' for v in values)} over "
            f"{len(values)} seeds (mean {stat.mean:.2f} ± {stat.std:.2f}, range "
            f"{max(values) - min(values):.2f} points)"
        )
    return lines


def write(
    mapping: dict[str, list[str]],
    *,
    results_root: Path = paths.RESULTS,
    out: Path = SUMMARY_FILE,
) -> Path:
    """Write the summary `out` (Markdown) and its HTML page `html_file(out)`; return `out`."""
    summary = collect(mapping, results_root)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(summary))
    html_file(out).write_text(to_html(summary))
    return out
