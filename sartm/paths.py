"""The one path convention, shared by the CLI, the Snakefile, the dvc.yaml generator and the tables.

    data/archives/<dataset>/            downloaded archives (+ their recorded SHA-256)
    data/raw/<dataset>/                 extracted original layout
    data/processed/<dataset>/           the common layout (meta.json, manifest.csv, <split>/...)
    data/text/<dataset>.pt              CLIP text-embedding cache
    results/train/<dataset>/<run>/      checkpoints, resolved config, training metrics
    results/eval/<dataset>/<run>/       metrics.json, predictions, features
    results/tables/, results/figures/   what the paper shows
Paths are relative to the project root (the working directory of every command).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RESULTS = Path("results")


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


def train_dir(run_id: str, root: Path = RESULTS) -> Path:
    """run_id is `<dataset>/<run>` (see Config.run_id)."""
    return root / "train" / run_id


def eval_dir(run_id: str, root: Path = RESULTS) -> Path:
    return root / "eval" / run_id


def tables_dir(root: Path = RESULTS) -> Path:
    return root / "tables"


def figures_dir(root: Path = RESULTS) -> Path:
    return root / "figures"
