"""`snakemake --report` over a copy of the workflow: tables shown as pages, captions, sections."""

from __future__ import annotations

import base64
import json
import re

from pipeline_fakes import write_dataset, write_metrics, write_predictions
from pipeline_helpers import REPO, copy_workflow, snakemake

from sartm import config as cfgmod
from sartm import runs
from sartm.report import figures, tables


def _script_var(page: str, name: str):
    """A JSON object that Snakemake's report embeds as `var <name> = {...};`."""
    return json.loads(re.search(rf'<script id="{name}">\s*var {name} = (.*?);\n', page).group(1))


def test_report_shows_tables_as_pages_with_captions_that_name_the_preset(tmp_path):
    root = copy_workflow(tmp_path / "project")
    params, results = cfgmod.load_params(root / "params.yaml"), root / "results" / "ci"
    t4, f4 = runs.item_jobs("t4", params, "ci"), runs.item_jobs("f4", params, "ci")
    for run_id in {r for ids in [*t4.values(), *f4.values()] for r in ids}:
        write_metrics(results, run_id, preset="ci")
    for ids in f4.values():
        write_predictions(results, ids[0], ["test000", "test001"], 5)
    write_dataset(root / "data" / "ci", "synth-pst900")
    tables.make("t4", t4, results_root=results, out_dir=results / "tables")
    figures.make(
        "f4", f4, results_root=results, data_root=root / "data" / "ci", out_dir=results / "figures"
    )
    targets = ["results/ci/tables/t4.md", "results/ci/figures/f4.png"]
    snakemake(root, "--report", "report.html", *targets, "--config", "preset=ci")

    page = (root / "report.html").read_text()
    assert _script_var(page, "categories") == {
        "Tables": {"Table IV": ["results/ci/tables/t4.csv", "results/ci/tables/t4.html"]},
        "Figures": {"Figure 4": ["results/ci/figures/f4.png"]},
    }
    shown = _script_var(page, "results")
    table = shown["results/ci/tables/t4.html"]
    assert table["mime_type"] == "text/html"  # the report shows it in the page, not as text
    data = base64.b64decode(table["data_uri"].split("base64,", 1)[1]).decode()
    assert data == (results / "tables" / "t4.html").read_text() and "<th>rank 4</th>" in data
    note = (
        "<p>Preset ci: SYNTHETIC stand-in data (synth-mfnet, synth-pst900, synth-fmb); the SAM2 "
        "encoder is the synthetic stand-in"
    )
    figure = shown["results/ci/figures/f4.png"]["caption"]
    assert "fixed test samples.</p>\n" + note in figure
    assert note in table["caption"] and "check the title" not in table["caption"]


def test_preset_note_of_the_real_preset():
    note = tables.preset_note(cfgmod.load_params(REPO / "params.yaml"), "paper")
    assert note.startswith("Preset paper: real data (mfnet, pst900, fmb); SAM2 encoder")
    assert "sam2_hiera_base_plus" in note and "SYNTHETIC" not in note and "stand-in" not in note


def test_every_item_has_a_report_section():
    sections = {n: tables.report_section(n) for n in [*runs.table_names(), *runs.figure_names()]}
    assert sections["t1"] == "Table I" and sections["t8"] == "Table VIII"
    assert sections["f7"] == "Figure 7" and sections["curves_t7"] == "Training curves"
    assert sections["day_night"] == sections["train_time"] == "Beyond the paper"
