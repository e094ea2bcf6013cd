"""The paper's figures from what the pipeline wrote (PNG + PDF, matplotlib's Agg backend).

F4-F6 qualitative grids read the predicted label maps `eval/<run>/pred/<id>.png` (under the
preset's results folder, sartm.paths) and the inputs from the processed dataset; F7 t-SNE reads
`eval/<run>/features.npz`; F8 reads the similarity matrices logged during training
(`train/<run>/similarity/epoch_<N>.npz`); the training curves read `train/<run>/history.csv`. Colours come from the dataset's palette
(`sartm.data.spec`, or meta.json for custom data) so every figure uses the same ones. A figure made
from synthetic data says SYNTHETIC in its title.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import cycler

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from sartm import paths  # noqa: E402
from sartm.data.common import load_meta, read_manifest  # noqa: E402
from sartm.data.spec import IGNORE_INDEX, spec_for  # noqa: E402
from sartm.report.results import ReportError, RunResult, load_results  # noqa: E402
from sartm.runs import item_spec  # noqa: E402

SYNTHETIC_TITLE = (
    "SYNTHETIC data, tiny SAM2 pretrained on synthetic scenes (preset {preset}) - not comparable"
    " to the paper"
)
IGNORE_COLOUR = (255, 255, 255)


def _title(spec: dict[str, Any], used: list[RunResult]) -> str:
    presets = "+".join(sorted({r.preset for r in used}))
    if any(r.synthetic for r in used):
        return f"{spec['title']}\n{SYNTHETIC_TITLE.format(preset=presets)}"
    return f"{spec['title']} (preset {presets})"


def palette(result: RunResult, data_root: Path = paths.DATA) -> np.ndarray:
    """(C, 3) uint8 colours of the run's classes: the dataset spec, else its meta.json."""
    try:
        colours = spec_for(result.source).palette
    except KeyError:
        colours = load_meta(paths.processed_dir(result.source, data_root))["palette"]
    if len(colours) != len(result.classes):
        raise ReportError(
            f"{result.files[0]}: {len(result.classes)} classes but the palette of "
            f"{result.source} has {len(colours)} colours"
        )
    return np.asarray(colours, dtype=np.uint8)


def colourise(label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Class-index map -> RGB (ignored / out-of-range pixels white)."""
    out = np.empty((*label.shape, 3), np.uint8)
    out[:] = IGNORE_COLOUR
    valid = label < len(colours)
    out[valid] = colours[label[valid]]
    return out


def read_label_png(path: Path, colours: np.ndarray) -> np.ndarray:
    """A predicted or ground-truth label map: palette/gray PNGs hold indices, RGB ones colours."""
    if not path.is_file():
        raise ReportError(f"{path}: missing (evaluation saves predictions: eval.save_predictions)")
    with Image.open(path) as img:
        if img.mode in ("P", "L"):
            return np.asarray(img.convert("L") if img.mode == "L" else img, dtype=np.uint8).copy()
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    out = np.full(rgb.shape[:2], IGNORE_INDEX, np.uint8)
    for index, colour in enumerate(colours):
        out[(rgb == colour).all(-1)] = index
    return out


def _legend(fig: plt.Figure, classes: list[str], colours: np.ndarray) -> None:
    handles = [
        Patch(facecolor=colours[i] / 255, edgecolor="0.4", linewidth=0.5, label=c)
        for i, c in enumerate(classes)
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(classes), 8), fontsize=7, frameon=False
    )


def _save(fig: plt.Figure, name: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    meta = {"Title": fig.get_suptitle().replace("\n", " - ")}  # the preset travels with the file
    fig.savefig(files[0], dpi=150, bbox_inches="tight", metadata=meta)
    fig.savefig(files[1], bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return files


def _get(results: dict[str, RunResult], logical: str) -> RunResult:
    if logical not in results:
        raise ReportError(f"no results for run {logical!r} (pass --run {logical})")
    return results[logical]


def qualitative(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    *,
    data_root: Path,
    results_root: Path,
    out_dir: Path,
) -> list[Path]:
    """F4-F6: RGB | thermal | ground truth | ours | ablations, on fixed test samples."""
    columns = {label: _get(results, lg) for label, lg in spec["runs"].items()}
    first = next(iter(columns.values()))
    colours = palette(first, data_root)
    pred_dirs = {
        label: paths.eval_dir(r.run_ids[0], results_root) / paths.PREDICTIONS
        for label, r in columns.items()
    }
    common = None
    for folder in pred_dirs.values():
        ids = {p.stem for p in folder.glob("*.png")}
        if not ids:
            raise ReportError(f"{folder}: no predicted label maps (eval.save_predictions > 0?)")
        common = ids if common is None else common & ids
    if not common:
        raise ReportError(f"{', '.join(map(str, pred_dirs.values()))}: no test sample in common")
    data_dir = paths.processed_dir(first.source, data_root)
    manifest = {row["id"]: row for row in read_manifest(data_dir) if row["split"] == "test"}
    ids = sorted(i for i in common if i in manifest)[: int(spec.get("samples", 4))]
    if not ids:
        raise ReportError(f"{data_dir}: none of the predicted samples is in the test split")
    heads = ["RGB", "thermal", "ground truth", *columns]
    fig, axes = plt.subplots(
        len(ids), len(heads), figsize=(2.1 * len(heads), 1.8 * len(ids) + 1), squeeze=False
    )
    for i, sample in enumerate(ids):
        row = manifest[sample]
        images = [
            np.asarray(Image.open(data_dir / row["rgb"]).convert("RGB")),
            np.asarray(Image.open(data_dir / row["thermal"]).convert("L")),
            colourise(read_label_png(data_dir / row["label"], colours), colours),
        ]
        images += [
            colourise(read_label_png(folder / f"{sample}.png", colours), colours)
            for folder in pred_dirs.values()
        ]
        for j, image in enumerate(images):
            ax = axes[i, j]
            ax.imshow(image, cmap="inferno" if image.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=9)
        axes[i, 0].set_ylabel(sample, fontsize=7)
    fig.suptitle(_title(spec, list(columns.values())), fontsize=10)
    _legend(fig, first.classes, colours)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, name, out_dir)


def _features(
    result: RunResult, results_root: Path, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    path = paths.eval_dir(result.run_ids[0], results_root) / paths.FEATURES
    if not path.is_file():
        raise ReportError(
            f"{path}: missing (evaluation samples pixel features: eval.tsne_pixels > 0)"
        )
    with np.load(path) as data:
        if "features" not in data or "labels" not in data:
            raise ReportError(f"{path}: needs arrays 'features' (N, d) and 'labels' (N,)")
        feats, labels = np.asarray(data["features"], float), np.asarray(data["labels"]).astype(int)
    if feats.ndim != 2 or feats.shape[0] != labels.shape[0]:
        raise ReportError(f"{path}: features {feats.shape} and labels {labels.shape} do not match")
    keep = labels != IGNORE_INDEX
    feats, labels = feats[keep], labels[keep]
    if feats.shape[0] > max_points:
        pick = np.random.default_rng(0).choice(feats.shape[0], max_points, replace=False)
        feats, labels = feats[pick], labels[pick]
    if feats.shape[0] < 5:
        raise ReportError(f"{path}: only {feats.shape[0]} labelled pixels; too few for t-SNE")
    return feats, labels


def embed_tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn): perplexity capped for small samples, exact gradients for them."""
    from sklearn.manifold import TSNE

    n = features.shape[0]
    tsne = TSNE(
        n_components=2,
        perplexity=float(min(30.0, max(2.0, (n - 1) / 3))),
        init="pca",
        method="exact" if n <= 500 else "barnes_hut",
        random_state=seed,
    )
    return tsne.fit_transform(features)


def tsne(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    *,
    data_root: Path,
    results_root: Path,
    out_dir: Path,
    max_points: int = 2000,
) -> list[Path]:
    """F7: one row per comparison, without | with."""
    panels = spec["runs"]
    width = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(
        len(panels), width, figsize=(4 * width, 3.8 * len(panels) + 0.6), squeeze=False
    )
    cache: dict[str, np.ndarray] = {}
    used = []
    colours, classes = None, None
    for i, (panel, pair) in enumerate(panels.items()):
        for j, (side, logical) in enumerate(pair.items()):
            r = _get(results, logical)
            used.append(r)
            colours = palette(r, data_root) if colours is None else colours
            classes = classes or r.classes
            feats, labels = _features(r, results_root, max_points)
            if logical not in cache:
                cache[logical] = embed_tsne(feats)
            xy = cache[logical]
            ax = axes[i, j]
            ax.scatter(xy[:, 0], xy[:, 1], c=colours[labels] / 255, s=3, linewidths=0)
            ax.set_title(f"{panel}: {side} ({logical})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(_title(spec, used), fontsize=10)
    _legend(fig, classes, colours)
    fig.tight_layout(rect=(0, 0.07, 1, 0.94))
    return _save(fig, name, out_dir)


_EPOCH = re.compile(r"epoch_(\d+)\.npz$")


def similarity(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    *,
    data_root: Path,
    results_root: Path,
    out_dir: Path,
) -> list[Path]:
    """F8: visual (top) and text (bottom) class-similarity matrices at the logged epochs.

    Each file holds `visual` (K, K), `text` (K, K, when there is a text teacher) and the K class
    names present in the batch (`classes`, as the training loop writes them).
    """
    ((_, logical),) = spec["runs"].items()
    r = _get(results, logical)
    folder = paths.train_dir(r.run_ids[0], results_root) / paths.SIMILARITY
    files = sorted(
        (int(m.group(1)), p) for p in folder.glob("epoch_*.npz") if (m := _EPOCH.search(p.name))
    )
    if not files:
        raise ReportError(f"{folder}: no epoch_<N>.npz (train.similarity_epochs, and loss.w3 > 0)")
    loaded = []
    for epoch, path in files:
        with np.load(path, allow_pickle=False) as data:
            if "visual" not in data.files or "classes" not in data.files:
                raise ReportError(f"{path}: needs arrays 'visual' and 'classes'")
            mats = {"visual": data["visual"]}
            if "text" in data.files:  # no text teacher when loss.w3 = 0
                mats["text"] = data["text"]
            loaded.append((epoch, path, mats, [str(c) for c in data["classes"]]))
    kinds = max(len(m) for _, _, m, _ in loaded)
    fig, axes = plt.subplots(
        kinds, len(files), figsize=(3.2 * len(files), 3.3 * kinds + 0.6), squeeze=False
    )
    image = None
    for j, (epoch, path, mats, names) in enumerate(loaded):
        for i, (kind, mat) in enumerate(mats.items()):
            if mat.shape != (len(names), len(names)):
                raise ReportError(
                    f"{path}: {kind} is {mat.shape}, expected {len(names)}x{len(names)}"
                )
            ax = axes[i, j]
            image = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
            ax.set_yticks(range(len(names)), names if j == 0 else [], fontsize=6)
            ax.set_title(f"{kind}, epoch {epoch}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    fig.suptitle(_title(spec, [r]) + f"\n{logical}", fontsize=10)
    return _save(fig, name, out_dir)


# One (colour, line style) per run, the same in every panel: tab10's colours solid, then dashed, ...
RUN_STYLES = cycler(linestyle=["-", "--", ":", "-."]) * cycler(color=plt.cm.tab10.colors)


def curves_figure(
    spec: dict[str, Any], results: dict[str, RunResult], results_root: Path
) -> plt.Figure:
    """The curves figure before saving, so that a test can read its lines and legend."""
    used = list(results.values())
    histories = {}
    for r in used:
        path = paths.train_dir(r.run_ids[0], results_root) / paths.HISTORY
        if not path.is_file():
            raise ReportError(f"{path}: missing (training writes one row per epoch)")
        frame = pd.read_csv(path)
        if "epoch" not in frame:
            raise ReportError(f"{path}: no 'epoch' column; has {list(frame.columns)}")
        histories[r.logical] = frame
    wanted = ["train_loss", "loss", "val_miou", "test_miou", "lr"]
    shown = [c for c in wanted if any(c in f and f[c].notna().any() for f in histories.values())]
    if not shown:
        raise ReportError(f"history.csv files of {list(histories)} have none of {wanted}")
    fig, axes = plt.subplots(
        1, len(shown), figsize=(4.2 * len(shown) + 1.6, 3.6), squeeze=False, layout="constrained"
    )
    styles = dict(zip(histories, RUN_STYLES()))
    handles = {}
    for ax, column in zip(axes[0], shown):
        for logical, frame in histories.items():
            if column in frame:
                (line,) = ax.plot(
                    frame["epoch"], frame[column], marker=".", label=logical, **styles[logical]
                )
                handles.setdefault(logical, line)
        ax.set_xlabel("epoch")
        ax.set_title(column, fontsize=9)
        if column == "lr":
            ax.set_yscale("log")
    # beside the panels, not over them: a table's sweep has up to 15 runs
    fig.legend(
        handles=list(handles.values()), loc="outside right upper", fontsize=7, handlelength=3.5
    )
    fig.suptitle(_title(spec, used), fontsize=10)
    return fig


def curves(
    name: str,
    spec: dict[str, Any],
    results: dict[str, RunResult],
    *,
    data_root: Path,
    results_root: Path,
    out_dir: Path,
) -> list[Path]:
    """Training curves of a table's runs: loss, the validation/test score, the learning rate."""
    return _save(curves_figure(spec, results, results_root), name, out_dir)


MAKERS: dict[str, Callable[..., list[Path]]] = {
    "qualitative": qualitative,
    "tsne": tsne,
    "similarity": similarity,
    "curves": curves,
}


def make(
    name: str,
    mapping: dict[str, list[str]],
    *,
    results_root: Path,
    out_dir: Path,
    data_root: Path = paths.DATA,
) -> list[Path]:
    """Load the runs a figure needs (`mapping`: logical -> run ids) and draw it."""
    group, spec = item_spec(name)
    if group != "figures":
        raise ReportError(f"{name!r} is a table, not a figure")
    if spec["kind"] not in MAKERS:
        raise ReportError(f"figure {name}: unknown kind {spec['kind']!r}")
    results = load_results(mapping, results_root)
    return MAKERS[spec["kind"]](
        name, spec, results, data_root=data_root, results_root=results_root, out_dir=out_dir
    )
