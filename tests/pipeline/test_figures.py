"""Figures from small fake outputs: files written, titles carry the preset, errors name files."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.colors import to_hex
from PIL import Image
from pipeline_fakes import (
    write_dataset,
    write_features,
    write_history,
    write_metrics,
    write_predictions,
    write_similarity,
)

from sartm.data.spec import spec_for
from sartm.report import figures
from sartm.report.results import ReportError, load_results
from sartm.runs import item_spec, leaves, runs_tree

RUNS = ("full", "no-language", "no-aux")


def _title(png) -> str:
    with Image.open(png) as img:
        return img.text["Title"]


@pytest.fixture
def pst900(tmp_path):
    """Results of the three F4 runs on a tiny synthetic PST900 with predictions."""
    results, data = tmp_path / "results", tmp_path / "data"
    write_dataset(data, "synth-pst900")
    for run in RUNS:
        write_metrics(results, f"pst900/{run}")
        write_predictions(results, f"pst900/{run}", ["test000", "test001", "test002"], 5)
        write_history(results, f"pst900/{run}")
    return results, data, {f"pst900/{r}": [f"pst900/{r}"] for r in RUNS}


def test_qualitative_grid(pst900, tmp_path):
    results, data, mapping = pst900
    png, pdf = figures.make(
        "f4", mapping, results_root=results, data_root=data, out_dir=tmp_path / "f"
    )
    assert png.stat().st_size > 0 and pdf.read_bytes().startswith(b"%PDF")
    title = _title(png)
    assert title.startswith("Figure 4") and "SYNTHETIC" in title and "preset demo" in title
    # the first predicted sample is drawn in the dataset's palette
    with Image.open(png) as img:
        colours = {tuple(c) for c in np.asarray(img.convert("RGB")).reshape(-1, 3)[::7]}
    assert (255, 0, 0) in colours and (0, 255, 0) in colours  # extinguisher, backpack


def test_qualitative_grid_needs_predictions(pst900, tmp_path):
    results, data, mapping = pst900
    for f in (results / "eval/pst900/no-aux/pred").iterdir():
        f.unlink()
    with pytest.raises(ReportError, match="eval/pst900/no-aux/pred: no predicted label maps"):
        figures.make("f4", mapping, results_root=results, data_root=data, out_dir=tmp_path)


def test_curves_and_similarity(pst900, tmp_path):
    results, data, mapping = pst900
    out = tmp_path / "f"
    (png, _) = figures.make(
        "curves_t1",
        {"pst900/full": ["pst900/full"]},
        results_root=results,
        data_root=data,
        out_dir=out,
    )
    assert "Training curves" in _title(png)
    with pytest.raises(ReportError, match="similarity: no epoch_"):
        figures.make("f8", {"pst900/full": ["pst900/full"]}, results_root=results, out_dir=out)
    write_similarity(results, "pst900/full", list(spec_for("pst900").classes))
    (png, _) = figures.make(
        "f8", {"pst900/full": ["pst900/full"]}, results_root=results, out_dir=out
    )
    assert _title(png).startswith("Figure 8")


def test_curves_of_a_sweep_read_at_a_glance(tmp_path):
    """Table VII's 15 runs: one style per run, the legend beside the panels, not over them."""
    results = tmp_path / "results"
    logical = leaves(runs_tree("t7"))
    for run in logical:
        write_metrics(results, run)
        write_history(results, run)
    loaded = load_results({lg: [lg] for lg in logical}, results)
    fig = figures.curves_figure(item_spec("curves_t7")[1], loaded, results)
    fig.canvas.draw()
    for ax in fig.axes:
        styles = {(to_hex(ln.get_color()), ln.get_linestyle()) for ln in ax.get_lines()}
        assert len(styles) == len(ax.get_lines()) == len(logical)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == logical
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_tightbbox()) for ax in fig.axes)
    plt.close(fig)


def test_tsne(tmp_path):
    results = tmp_path / "results"
    mapping = {}
    for run in RUNS:
        metrics = write_metrics(results, f"fmb/{run}", preset="paper")
        write_features(results, f"fmb/{run}", len(metrics["classes"]), n=40)
        mapping[f"fmb/{run}"] = [f"fmb/{run}"]
    (png, _) = figures.make("f7", mapping, results_root=results, out_dir=tmp_path / "f")
    title = _title(png)
    assert "t-SNE" in title and "SYNTHETIC" not in title and "preset paper" in title


def test_tsne_embedding_separates_separable_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = rng.normal(size=(60, 8)) + 20 * labels[:, None]
    xy = figures.embed_tsne(features)
    a, b = xy[labels == 0].mean(0), xy[labels == 1].mean(0)
    spread = max(xy[labels == 0].std(0).max(), xy[labels == 1].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread


def test_palette_png_and_rgb_predictions_read_the_same(tmp_path):
    colours = np.asarray(spec_for("mfnet").palette, np.uint8)
    label = np.arange(9, dtype=np.uint8).repeat(4).reshape(6, 6)
    img = Image.fromarray(label, mode="P")
    img.putpalette(colours.ravel().tolist())
    img.save(tmp_path / "p.png")
    Image.fromarray(figures.colourise(label, colours)).save(tmp_path / "rgb.png")
    assert (figures.read_label_png(tmp_path / "p.png", colours) == label).all()
    assert (figures.read_label_png(tmp_path / "rgb.png", colours) == label).all()
