"""The numbers published in the SARTM paper, and the rows the paper got wrong.

The data is our transcription in `sartm/resources/paper_results.yaml` (percentages; null where the
paper prints "-"). Every section is normalised here to named rows of named columns, so the table
code never needs to know how a section was typed in; each section's `flags:` (docs/method.md section 7)
become `Flag`s that the tables print beside the values instead of comparing silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sartm.errors import SartmError

PAPER_FILE = Path(__file__).resolve().parent.parent / "resources" / "paper_results.yaml"


class PaperDataError(SartmError, ValueError):
    """paper_results.yaml does not have the shape this module expects (names the section)."""


@dataclass(frozen=True)
class Flag:
    """A published row (or some of its cells) that the paper got wrong."""

    row: str
    note: str
    columns: tuple[str, ...] = ()  # empty: the whole row
    compare: bool = True  # False: the value is not the method's own; no difference is computed

    def covers(self, row: str, column: str) -> bool:
        return row == self.row and (not self.columns or column in self.columns)


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: rows[row][column] in percent (NaN where not published)."""

    key: str
    columns: tuple[str, ...]
    rows: dict[str, dict[str, float]]
    flags: tuple[Flag, ...] = ()
    notes: tuple[str, ...] = field(default=())
    title: str = ""  # the paper's caption, e.g. "Table IV: Ablation study on the rank size ..."
    labels: dict[str, str] = field(default_factory=dict)  # row key -> the paper's wording

    def label(self, row: str) -> str:
        """The row as the paper prints it (keys such as `without_language` stay for lookups)."""
        return self.labels.get(row, row)

    def value(self, row: str, column: str) -> float:
        return self.rows.get(row, {}).get(column, math.nan)

    def flag(self, row: str, column: str) -> Flag | None:
        return next((f for f in self.flags if f.covers(row, column)), None)

    def row_flags(self, row: str) -> list[Flag]:
        return [f for f in self.flags if f.row == row]


@cache
def raw() -> dict[str, Any]:
    return yaml.safe_load(PAPER_FILE.read_text())


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _flags(section: dict[str, Any], key: str) -> tuple[Flag, ...]:
    out = []
    for item in section.get("flags", []):
        if "row" not in item or "note" not in item:
            raise PaperDataError(f"{PAPER_FILE}: {key}.flags: each flag needs `row` and `note`")
        out.append(
            Flag(
                row=str(item["row"]),
                note=" ".join(str(item["note"]).split()),
                columns=tuple(str(c) for c in item.get("columns", ())),
                compare=bool(item.get("compare", True)),
            )
        )
    return tuple(out)


def _sweep_key(name: str, value: Any) -> str:
    """Table VII's row names: `w1=0.008` (numbers printed the way the YAML keys read)."""
    return f"{name}={_fmt_number(value)}"


def _fmt_number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def table(key: str) -> PaperTable:
    """The paper table stored under `key` (e.g. `table1_pst900`), normalised."""
    data = raw()
    if key not in data:
        raise PaperDataError(f"{PAPER_FILE}: no section {key!r}; known: {', '.join(data)}")
    section = data[key]
    notes = tuple(" ".join(str(n).split()) for n in section.get("notes", ()))
    flags = _flags(section, key)
    shown = {"title": str(section.get("title", key)), "labels": dict(section.get("labels", {}))}
    if "columns" in section:  # rows: name -> list, or a list of lists led by the row key
        columns = tuple(str(c) for c in section["columns"])
        rows: dict[str, dict[str, float]] = {}
        items = section["rows"]
        pairs = items.items() if isinstance(items, dict) else ((r[0], r[1:]) for r in items)
        for name, values in pairs:
            cols = columns if isinstance(items, dict) else columns[1:]
            if len(values) != len(cols):
                raise PaperDataError(
                    f"{PAPER_FILE}: {key}.rows.{name}: {len(values)} values for {len(cols)} columns"
                )
            rows[_fmt_number(name) if not isinstance(name, str) else name] = {
                c: _number(v) for c, v in zip(cols, values)
            }
        if not isinstance(items, dict):
            columns = columns[1:]
        return PaperTable(key, columns, rows, flags, notes, **shown)
    # Mappings of value -> mIoU: one sweep per key (Table VII) or one row per key (Table VIII).
    sweeps = {k: v for k, v in section.items() if k not in ("flags", "notes", *shown)}
    if all(isinstance(v, dict) for v in sweeps.values()):
        rows = {
            _sweep_key(name, value): {"mIoU": _number(miou)}
            for name, sweep in sweeps.items()
            for value, miou in sweep.items()
        }
    else:
        rows = {str(name): {"mIoU": _number(miou)} for name, miou in sweeps.items()}
    return PaperTable(key, ("mIoU",), rows, flags, notes, **shown)
