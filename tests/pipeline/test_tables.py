"""Tables and the summary, from small metrics.json files written by the tests."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner
from pipeline_fakes import write_metrics, write_summary_runs
from pipeline_helpers import REPO

from sartm import paths
from sartm.cli import cli
from sartm.report import paper, summary, tables
from sartm.report.results import ReportError, load_results, write_scores


def _make(name, results, out, mapping):
    tables.make(name, mapping, results_root=results, out_dir=out)
    return (out / f"{name}.md").read_text(), pd.read_csv(out / f"{name}.csv", index_col="row")


def test_per_class_table_compares_ours_with_the_paper(tmp_path):
    results, out = tmp_path / "results", tmp_path / "tables"
    m = write_metrics(results, "pst900/full", miou=0.5)
    md, csv = _make("t1", results, out, {"pst900/full": ["pst900/full"]})
    ours = "SARTM (ours, last checkpoint)"
    assert csv.loc[ours, "mIoU"] == pytest.approx(50.0)
    assert csv.loc[ours, "backpack"] == pytest.approx(100 * m["test"]["iou"][2])
    assert csv.loc["Δ ours - paper", "mIoU"] == pytest.approx(50.0 - 89.88)
    assert csv.loc["Δ ours - paper", "survivor"] == pytest.approx(100 * m["test"]["iou"][4] - 84.19)
    assert csv.loc["SARTM (paper)", "mIoU"] == pytest.approx(89.88)
    assert csv.loc["HAPNet", "hand_drill"] == pytest.approx(89.3)
    # the authors' best-on-test number sits beside ours, marked
    best = "SARTM (ours, best on test ‡)"
    assert csv.loc[best, "mIoU"] == pytest.approx(100 * m["test_best"]["miou"])
    assert "‡ the authors' protocol" in md
    # a row the paper got wrong is marked, with the reason
    assert "MMSFormer" in md and "†1" in md and "repeats the MRFS row" in md
    assert "fire_extinguisher:†1" in csv.loc["MMSFormer", "marks"]
    # demo data says so in the title of every format
    assert md.splitlines()[0].startswith("# Table I") and "SYNTHETIC" in md.splitlines()[0]
    assert "NOT comparable to the paper" in (out / "t1.tex").read_text()
    assert (csv["preset"] == "demo").all() and csv["synthetic"].all()


def test_flagged_cells_are_not_compared_when_the_value_is_not_sartms(tmp_path):
    """Table III: the paper's SARTM per-class row repeats SegMiF; only its mIoU is SARTM's."""
    results, out = tmp_path / "results", tmp_path / "tables"
    write_metrics(results, "fmb/full", miou=0.6)
    md, csv = _make("t3", results, out, {"fmb/full": ["fmb/full"]})
    delta = csv.loc["Δ ours - paper"]
    assert math.isnan(delta["car"]) and math.isnan(delta["lamp"])  # t_lamp -> lamp
    assert delta["mIoU"] == pytest.approx(60.0 - 61.57)
    assert "car:†1" in delta["marks"]
    assert "repeat the SegMiF row" in md
    # classes the paper does not show are ours only
    assert math.isnan(csv.loc["SARTM (paper)", "road"]) and not math.isnan(
        csv.loc["SARTM (ours, last checkpoint)", "road"]
    )


def test_components_table_marks_contradictory_paper_cells(tmp_path):
    results, out = tmp_path / "results", tmp_path / "tables"
    mapping = {}
    for ds in ("fmb", "mfnet", "pst900"):
        for run in ("full", "no-language", "no-aux"):
            write_metrics(results, f"{ds}/{run}", miou=0.55)
            mapping[f"{ds}/{run}"] = [f"{ds}/{run}"]
    md, csv = _make("t5", results, out, mapping)
    # rows as the paper words them, not the keys of paper_results.yaml
    assert list(csv.index) == ["SARTM", "- without language", "- without Aux_Seg_Head"]
    assert csv.loc["- without Aux_Seg_Head", "MFNet paper"] == pytest.approx(58.67)
    assert csv.loc["- without Aux_Seg_Head", "MFNet Δ"] == pytest.approx(55.0 - 58.67)
    assert "MFNet paper:†" in csv.loc["- without Aux_Seg_Head", "marks"]
    assert "PST900 paper:†" in csv.loc["- without language", "marks"]
    assert pd.isna(csv.loc["SARTM", "marks"])  # nothing flagged in the full-model row
    assert "HAS the auxiliary head" in md
    # the report's page: the same table as HTML, title and notes escaped, no Markdown
    page = (out / "t5.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<th>- without Aux_Seg_Head</th>" in page
    assert "<title>Table V: components" in page and "SYNTHETIC" in page
    assert "HAS the auxiliary head" in page and "|" not in page


def test_sweeps_seeds_and_aliases(tmp_path):
    """Table VII with two seeds (mean ± std) and runs served by another run's job."""
    results, out = tmp_path / "results", tmp_path / "tables"
    mapping = {}
    spec = tables.item_spec("t7")[1]["runs"]
    for sweep in spec.values():
        for logical in sweep.values():
            mapping[logical] = [logical, f"{logical}/seed7"]
            write_metrics(results, logical, miou=0.50)
            write_metrics(results, f"{logical}/seed7", miou=0.60)
    md, csv = _make("t7", results, out, mapping)
    assert csv.loc["w2=10000", "ours mIoU"] == pytest.approx(55.0)
    assert csv.loc["w2=10000", "ours mIoU std"] == pytest.approx(math.sqrt(50))
    assert csv.loc["w2=10000", "paper mIoU"] == pytest.approx(59.32)
    assert csv.loc["w3=100", "Δ mIoU"] == pytest.approx(55.0 - 60.03)
    assert "55.00 ± 7.07" in md and "mean ± standard deviation over seeds" in md
    assert "mfnet/w2-10000 = mfnet/w2-10000" not in md  # no alias shown where there is none


def test_paper_preset_title_and_no_best_row(tmp_path):
    results, out = tmp_path / "results", tmp_path / "tables"
    write_metrics(results, "mfnet/full", preset="paper", best=False)
    md, csv = _make("t2", results, out, {"mfnet/full": ["mfnet/full"]})
    assert "SYNTHETIC" not in md and "(preset paper)" in md.splitlines()[0]
    assert not any("best on test" in row for row in csv.index)
    assert "guardrail" in csv.columns and math.isnan(csv.loc["SARTM (paper)", "guardrail"])
    assert "mIoU:†1" in csv.loc["SARTM (paper)", "marks"]


def test_extra_tables(tmp_path):
    results, out = tmp_path / "results", tmp_path / "tables"
    m = write_metrics(results, "mfnet/full")
    for run in ("no-language", "no-aux"):
        write_metrics(results, f"mfnet/{run}")
    _, csv = _make(
        "day_night",
        results,
        out,
        {f"mfnet/{r}": [f"mfnet/{r}"] for r in ("full", "no-language", "no-aux")},
    )
    assert csv.loc["SARTM", "night mIoU"] == pytest.approx(100 * m["subsets"]["night"]["miou"])
    for ds in ("pst900", "fmb"):
        write_metrics(results, f"{ds}/full")
    _, csv = _make(
        "robustness", results, out, {f"{d}/full": [f"{d}/full"] for d in ("pst900", "mfnet", "fmb")}
    )
    blanked = 100 * m["robustness"]["thermal_blanked"]["miou"]
    assert csv.loc["MFNet", "Δ thermal blanked"] == pytest.approx(blanked - 100 * m["test"]["miou"])
    # training time: Snakemake's benchmark where there is one, else metrics.json
    bench = paths.benchmark_file("train", "mfnet/full", results)
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n120.0\t0:02:00\t2048\n")
    _, csv = _make(
        "train_time", results, out, {"mfnet/full": ["mfnet/full"], "mfnet/no-aux": ["mfnet/no-aux"]}
    )
    assert csv.loc["mfnet/full", "train (min)"] == pytest.approx(2.0)
    assert csv.loc["mfnet/full", "train max RSS (GB)"] == pytest.approx(2.0)
    assert csv.loc["mfnet/no-aux", "train (min)"] == pytest.approx(0.5)  # train_time_s 30


def test_missing_metrics_name_the_file(tmp_path):
    with pytest.raises(ReportError, match=r"results/eval/pst900/full/metrics.json: missing"):
        tables.make(
            "t1",
            {"pst900/full": ["pst900/full"]},
            results_root=tmp_path / "results",
            out_dir=tmp_path,
        )
    write_metrics(tmp_path / "results", "pst900/full")
    with pytest.raises(ReportError, match="no results given"):
        tables.make(
            "t4",
            {"pst900/full": ["pst900/full"]},
            results_root=tmp_path / "results",
            out_dir=tmp_path,
        )


def test_summary_sets_headlines_side_by_side(tmp_path):
    results = tmp_path / "results"
    mapping = {}
    for logical in summary.summary_runs():
        write_metrics(results, logical, miou=0.5)
        mapping[logical] = [logical]
    path = summary.write(mapping, results_root=results, out=tmp_path / "summary.md")
    text = path.read_text()
    assert "SYNTHETIC" in text.splitlines()[2]
    assert "table1_pst900" not in text and "without_aux_head" not in text  # no internal keys
    # one section per table, under the paper's title, with the paper's row names
    sections = dict(
        (part.splitlines()[0], part) for part in text.split("\n## ")[1:] if part.startswith("Table")
    )
    assert [title.split(":")[0] for title in sections] == [
        f"Table {n}" for n in ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")
    ]
    t1 = sections[
        "Table I: Quantitative comparisons (%) with the SoTA RGB-T scene parsing methods on the "
        "PST900 test set"
    ]
    line = next(ln for ln in t1.splitlines() if "| SARTM mIoU" in ln)
    assert "89.88" in line and "50.00" in line and "-39.88" in line
    t5 = sections["Table V: Ablation study of the Fusion Block on three dataset"]
    flagged = next(ln for ln in t5.splitlines() if "- without Aux_Seg_Head (MFNet)" in ln)
    assert "58.67 †" in flagged
    t6 = sections["Table VI: Ablation of different losses on PST900 with SARTM"]
    assert "| L_CE(S0) + L_CE(S1) + L_cr + L_se " in t6
    assert "flagged in the paper" in text
    rows = [
        len([ln for ln in s.splitlines() if ln.startswith("| ")]) - 1 for s in sections.values()
    ]
    assert rows == [1, 1, 1, 5, 9, 4, 15, 3]


def test_paper_data_is_complete():
    t7 = paper.table("table7_loss_weights_mfnet")
    assert t7.value("w2=10000", "mIoU") == pytest.approx(59.32)
    assert t7.flag("w1=0.008", "mIoU") is not None
    t3 = paper.table("table3_fmb")
    assert not t3.flag("SARTM", "mIoU") and not t3.flag("SARTM", "car").compare


def test_report_cli(tmp_path):
    results = tmp_path / "results"
    for run in ("full", "rank4", "rank8", "rank32", "rank64"):
        write_metrics(results, f"pst900/{run}")
    args = ["report", "tables", "t4", "--results", str(results), "--out", str(tmp_path / "t")]
    runs = [
        a for r in ("rank4", "rank8", "full", "rank32", "rank64") for a in ("--run", f"pst900/{r}")
    ]
    result = CliRunner().invoke(cli, [*args, *runs])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "t").iterdir()} == {"t4.md", "t4.csv", "t4.tex", "t4.html"}
    bad = CliRunner().invoke(cli, [*args, "--run", "pst900/full"])
    assert bad.exit_code != 0 and "no results given" in bad.output
    # without --run the jobs come from params.yaml (here all five exist, one seed each)
    default = CliRunner().invoke(
        cli, [*args, "--params", str(REPO / "params.yaml"), "--preset", "paper"]
    )
    assert default.exit_code == 0, default.output
    summary_cmd = ["report", "summary", "--results", str(results), "--out", str(tmp_path / "s.md")]
    missing = CliRunner().invoke(cli, [*summary_cmd, "--params", str(REPO / "params.yaml")])
    assert missing.exit_code != 0 and "metrics.json: missing" in missing.output


def test_seed_spread_in_the_summary_and_the_foundation_table(tmp_path):
    results = tmp_path / "results"
    mapping = write_summary_runs(results)
    text = summary.write(mapping, results_root=results, out=tmp_path / "s.md").read_text()
    spread = next(ln for ln in text.splitlines() if ln.startswith("- pst900/full: test mIoU"))
    assert "50.00, 46.00, 56.00 over 3 seeds" in spread and "range 10.00 points" in spread
    assert "± 5.03" in spread  # sample standard deviation of 50, 46, 56
    assert "over 3 seeds" not in text.replace(spread, "")  # one-seed runs are not listed
    scores = json.loads(write_scores(mapping, results, tmp_path / "scores.json").read_text())
    assert {k: scores[k] for k in mapping["pst900/full"]} == {
        "pst900/full": 50.0, "pst900/full/seed1": 46.0, "pst900/full/seed2": 56.0,
    }  # fmt: skip
    assert len(scores) == len({r for ids in mapping.values() for r in ids})

    write_metrics(results, "pst900/random-encoder", miou=0.30)
    mapping["pst900/random-encoder"] = ["pst900/random-encoder"]
    table = tables.build("foundation", load_results(mapping, results), results)
    assert table.values.loc["random encoder", "mIoU"] == pytest.approx(30.0)
    assert table.values.loc["pretrained SAM2 stand-in", "mIoU"] == pytest.approx(50.667, abs=1e-3)
    assert table.std.loc["pretrained SAM2 stand-in", "mIoU"] == pytest.approx(5.033, abs=1e-3)
    md = tables.to_markdown(table)
    assert "only the frozen SAM2 weights differ" in md and "seed-to-seed spread" in md


def test_a_dataset_of_your_own_has_its_per_class_table(tmp_path):
    """Its classes as columns, one row per run on it, no published rows."""
    results, classes = tmp_path / "results", ["background", "person", "car"]
    mapping = {}
    for run, miou in (("full", 0.6), ("no-aux", 0.4)):
        m = write_metrics(results, f"pst900/{run}", miou=miou)
        m.update(dataset="mine", source="custom-mine", synthetic=False, classes=classes)
        m["test"]["iou"] = m["test"]["iou"][:3]
        path = paths.metrics_file(f"mine/{run}", results)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(m))
        mapping[f"mine/{run}"] = [f"mine/{run}"]
    md, csv, _, html = tables.make("classes-mine", mapping, results_root=results, out_dir=tmp_path)
    frame = pd.read_csv(csv, index_col=0)
    assert list(frame.columns[:4]) == [*classes, "mIoU"] and list(frame.index) == ["full", "no-aux"]
    assert frame.loc["full", "mIoU"] == pytest.approx(60.0)
    assert frame.loc["no-aux", "car"] == pytest.approx(100 * m["test"]["iou"][2])
    text = md.read_text()
    assert text.startswith("# Your dataset mine") and "paper" not in text.lower()
