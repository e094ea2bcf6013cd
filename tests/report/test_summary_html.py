"""The summary's HTML page (what Snakemake's report shows): the Markdown summary's content, every
table group and every flagged-row marker, on a styled standalone page beside summary.md."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))
from pipeline_fakes import write_summary_runs  # noqa: E402

from sartm.report import summary, tables  # noqa: E402


class _Page(HTMLParser):
    """Headings, tables (rows of cell texts, with the flag links they hold), list items (with
    their id), paragraphs (with their class) and links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.h1, self.h2, self.tables, self.items, self.links = [], [], [], [], []
        self.paragraphs = []
        self._text: list[str] | None = None
        self._row: dict | None = None
        self._attrs: dict = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = {"cells": [], "header": False, "flag": []}
        elif tag in ("h1", "h2", "td", "th", "li", "p"):
            self._text, self._attrs = [], attrs
        elif tag == "a":
            self.links.append(attrs.get("href"))
            if attrs.get("class") == "flag" and self._row is not None:
                self._row["flag"].append(attrs.get("href"))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        text = "".join(self._text or []).strip()
        if tag in ("td", "th") and self._row is not None:
            self._row["cells"].append(text)
            self._row["header"] |= tag == "th"
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None
        elif tag == "h1":
            self.h1.append(text)
        elif tag == "h2":
            self.h2.append(text)
        elif tag == "li":
            self.items.append((self._attrs.get("id"), text))
        elif tag == "p":
            self.paragraphs.append((self._attrs.get("class"), text))
        if tag in ("h1", "h2", "td", "th", "li", "p"):
            self._text = None


def _markdown_groups(text: str) -> dict[str, list[list[str]]]:
    """## title -> the rows (header first) of the Markdown table under it."""
    groups = {}
    for part in text.split("\n## ")[1:]:
        title, *lines = part.splitlines()
        rows = [ln for ln in lines if ln.startswith("|") and not re.match(r"^\|[-:| ]+\|$", ln)]
        if rows:
            groups[title] = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]
    return groups


def test_the_html_summary_holds_every_table_group_and_the_flagged_row_markers(tmp_path):
    results = tmp_path / "results"
    mapping = write_summary_runs(results)
    out = tmp_path / "ci" / "summary.md"
    assert summary.write(mapping, results_root=results, out=out) == out
    page_file = summary.html_file(out)
    assert page_file == tmp_path / "ci" / "summary.html"  # beside the .md, same stem
    assert summary.files(out) == [out, page_file]
    md, text = out.read_text(), page_file.read_text()
    assert md == summary.build(mapping, results)
    page = _Page()
    page.feed(text)
    page.close()

    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "border-collapse: collapse" in text  # the tables' page style
    assert page.h1 == [summary.TITLE] and md.startswith(f"# {summary.TITLE}\n")
    assert ("warning", f"{tables.SYNTHETIC_WARNING.format(preset='demo')}.") in page.paragraphs

    # Every table group of the Markdown, in its order, with the same rows and cells.
    groups = _markdown_groups(md)
    assert len(groups) == len(summary.summary_tables()) == 8
    assert page.h2 == [*groups, "Notes"]
    assert len(page.tables) == len(groups)
    for (title, rows), table in zip(groups.items(), page.tables):
        assert [r["cells"] for r in table] == rows, title
        assert table[0]["header"] and not any(r["header"] for r in table[1:])
    for group in summary.collect(mapping, results).groups:
        line = f"Full table: tables/{group.table}.md (beside this summary)"
        assert line in md.splitlines() and ("full", line) in page.paragraphs

    # The flagged rows: the same markers as the Markdown, each row highlighted, each marker a
    # link to its note.
    marks = re.findall(r"†\d+", md.split("\n## Notes")[0])
    assert marks == [f"†{i}" for i in range(1, len(marks) + 1)] and len(marks) >= 3
    cells = [" ".join(r["cells"]) for table in page.tables for r in table]
    assert re.findall(r"†\d+", " ".join(cells)) == marks
    flagged = [r for table in page.tables for r in table if r["flag"]]
    assert [h for r in flagged for h in r["flag"]] == [f"#flag-{m[1:]}" for m in marks]
    assert all(re.search(r"†\d+", r["cells"][1]) for r in flagged)  # in the paper column
    t5 = page.tables[list(groups).index(next(t for t in groups if t.startswith("Table V:")))]
    row = next(r for r in t5 if r["cells"][0] == "- without Aux_Seg_Head (MFNet)")
    assert row["flag"] and row["cells"][1].startswith("58.67 †")
    assert "tr:has(a.flag)" in text  # the style highlights them
    notes = dict(page.items)
    for mark in marks:
        anchor = f"flag-{mark[1:]}"
        assert f"#{anchor}" in page.links
        assert notes[anchor].startswith(f"{mark} flagged in the paper: "), notes
        assert f"- {notes[anchor]}" in md

    # The notes and the seed-to-seed spread, as in the Markdown.
    listed = [item for _, item in page.items]
    bullets = [ln[2:] for ln in md.splitlines() if ln.startswith("- ")]
    assert listed == bullets
    assert any(item.startswith("pst900/full: test mIoU 50.00, 46.00, 56.00") for item in listed)
    assert (None, summary.SPREAD_HEAD) in page.paragraphs
