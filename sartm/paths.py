"""The one path convention: every folder and every file name the CLI, the Snakefile, the dvc.yaml
generator and the report use. Nothing else writes a path literal.

    data/archives/<dataset>/            downloaded archives (+ their recorded SHA-256)
    data/raw/<dataset>/                 extracted original layout
    data/processed/<dataset>/           the common layout (meta.json, manifest.csv, <split>/...)
    data/text/<dataset>.pt              CLIP text-embedding cache
    results/<preset>/                   everything one preset made, beside the other presets':
        configs/<run_id>.yaml           the resolved configuration of each training job
        train/<run_id>/                 last.pt, best.pt, history.csv, similarity/, train_metrics.json
        eval/<run_id>/                  metrics.json, pred/, features.npz
        tables/, figures/, summary.md   what the paper shows (scores.json: every job's test mIoU)
        pipeline/, logs/, benchmarks/   set-up records, job logs, Snakemake's benchmarks
        report.zip                      Snakemake's browsable report
`run_id` is `<dataset>/<run>[/seed<k>]` (Config.run_id). Paths are relative to the project root
(the working directory of every command).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RESULTS = Path("results")

# files inside a training run's folder
LAST = "last.pt"  # the whole training state; its rename is the commit of an epoch
BEST = "best.pt"
HISTORY = "history.csv"
TRAIN_METRICS = "train_metrics.json"  # written last: the run is finished
SIMILARITY = "similarity"
# files inside an evaluation folder
METRICS = "metrics.json"  # the evaluation contract the report reads
PREDICTIONS = "pred"
FEATURES = "features.npz"  # keys: classes, features, labels (t-SNE)


def archives_dir(dataset: str, root: Path = DATA) -> Path:
    return root / "archives" / dataset


def raw_dir(dataset: str, root: Path = DATA) -> Path:
    return root / "raw" / dataset


def processed_dir(dataset: str, root: Path = DATA) -> Path:
    return root / "processed" / dataset


def meta_file(dataset: str, root: Path = DATA) -> Path:
    return processed_dir(dataset, root) / "meta.json"


def text_cache(dataset: str, root: Path = DATA) -> Path:
    return root / "text" / f"{dataset}.pt"


def results_root(preset: str, root: Path = RESULTS) -> Path:
    """Every output of one preset: presets never overwrite each other's runs or tables."""
    return root / preset


def config_file(run_id: str, root: Path) -> Path:
    return root / "configs" / f"{run_id}.yaml"


def train_dir(run_id: str, root: Path) -> Path:
    return root / "train" / run_id


def train_done(run_id: str, root: Path) -> Path:
    """Written last by `sartm train`: the checkpoints beside it survive a rerun (auto-resume)."""
    return train_dir(run_id, root) / TRAIN_METRICS


def eval_dir(run_id: str, root: Path) -> Path:
    return root / "eval" / run_id


def metrics_file(run_id: str, root: Path) -> Path:
    return eval_dir(run_id, root) / METRICS


def tables_dir(root: Path) -> Path:
    return root / "tables"


def figures_dir(root: Path) -> Path:
    return root / "figures"


def table_files(name: str, root: Path) -> list[Path]:
    return [tables_dir(root) / f"{name}.{ext}" for ext in ("md", "csv", "tex", "html")]


def figure_files(name: str, root: Path) -> list[Path]:
    return [figures_dir(root) / f"{name}.{ext}" for ext in ("png", "pdf")]


def summary_file(root: Path) -> Path:
    return root / "summary.md"


def summary_html(root: Path) -> Path:
    return root / "summary.html"


def scores_file(root: Path) -> Path:
    """{run id: test mIoU %}: the headline numbers, as DVC's metrics file."""
    return root / "scores.json"


def report_file(root: Path) -> Path:
    return root / "report.zip"


def stamp_file(name: str, root: Path) -> Path:
    """Small records of finished set-up steps (tracking store, data, text cache), by file name."""
    return root / "pipeline" / name


def log_file(step: str, name: str, root: Path) -> Path:
    return root / "logs" / step / f"{name}.log"


def benchmark_file(step: str, run_id: str, root: Path) -> Path:
    """Snakemake's benchmark of one job (`step` is train or evaluate)."""
    return root / "benchmarks" / step / f"{run_id}.tsv"
