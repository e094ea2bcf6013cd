"""Which training jobs each table and figure reads: experiments.yaml resolved against params.yaml.

A table names logical runs (`pst900/no-language`, a run of params.yaml's run list); the pipeline
trains one job per distinct canonical configuration and seed. `job_map` turns logical runs into
those jobs' run ids (one per seed), which is all the report code needs to find each run's
metrics.json. Config level only (no torch): the Snakefile, the dvc.yaml generator and the CLI
import it (through sartm.pipeline.plan).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sartm import config as cfgmod
from sartm.errors import SartmError

EXPERIMENTS_FILE = Path(__file__).resolve().parent / "resources" / "experiments.yaml"
ALL = "all"
# Each dataset of the user's (params.yaml `datasets:`) has a per-class table of every run on it.
OWN_TABLE = "classes-"
OF_DATASET = "dataset:"  # its `runs:`: every run of the run list on that dataset


class RunListError(SartmError, ValueError):
    """experiments.yaml and params.yaml's run list disagree, or a --run option is malformed."""


@cache
def experiments() -> dict[str, Any]:
    return yaml.safe_load(EXPERIMENTS_FILE.read_text())


def own_table(dataset: str) -> str:
    return f"{OWN_TABLE}{dataset}"


def item_spec(name: str) -> tuple[str, dict[str, Any]]:
    """("tables" | "figures", spec) of a table or figure name."""
    if name.startswith(OWN_TABLE):
        dataset = name.removeprefix(OWN_TABLE)
        title = f"Your dataset {dataset}: test set, per-class IoU and mIoU (%) of its runs"
        return "tables", {"kind": "classes", "title": title, "runs": OF_DATASET + dataset}
    spec = experiments()
    for group in ("tables", "figures"):
        if name in spec[group]:
            return group, spec[group][name]
    known = [*spec["tables"], *spec["figures"]]
    raise RunListError(
        f"{EXPERIMENTS_FILE}: no table or figure {name!r}; known: {', '.join(known)}"
    )


def table_names(params: dict[str, Any] | None = None, preset: str | None = None) -> list[str]:
    """Every table; with `params`, those whose runs all exist in the preset (the demo has a
    table of its own runs)."""
    names = [n for n in experiments()["tables"] if params is None or available(n, params, preset)]
    return names + [own_table(ds) for ds in (params or {}).get("datasets", {})]


def figure_names(params: dict[str, Any] | None = None, preset: str | None = None) -> list[str]:
    return [n for n in experiments()["figures"] if params is None or available(n, params, preset)]


def available(name: str, params: dict[str, Any], preset: str | None = None) -> bool:
    """True when every run the item reads is a run of the preset."""
    tree = runs_tree(name)
    if tree == ALL:
        return True
    if isinstance(tree, str) and tree.startswith(OF_DATASET):
        return tree.removeprefix(OF_DATASET) in params.get("datasets", {})
    runs = cfgmod.run_list(params, preset)
    return all(lg.split("/", 1)[1] in runs for lg in leaves(tree))


def leaves(tree: Any) -> list[str]:
    """Every string leaf of a nested `runs:` mapping, in order, without repeats."""
    if isinstance(tree, str):
        return [tree]
    out: list[str] = []
    for value in tree.values() if isinstance(tree, dict) else ():
        out.extend(leaves(value))
    return list(dict.fromkeys(out))


def runs_tree(name: str) -> Any:
    """The `runs:` of a table or figure (a curves figure reads the runs of its table)."""
    _, spec = item_spec(name)
    if "table" in spec:
        return item_spec(spec["table"])[1]["runs"]
    return spec["runs"]


def logical_runs(
    name: str, params: dict[str, Any], preset: str | None = None, aliases=None
) -> list[str]:
    """The `dataset/run` names an item reads (`all`: every training job of the first seed)."""
    tree = runs_tree(name)
    if tree == ALL:
        aliases = aliases or cfgmod.seed_run_aliases(params, preset)
        return list(dict.fromkeys(aliases[0].values()))
    if isinstance(tree, str) and tree.startswith(OF_DATASET):
        dataset = tree.removeprefix(OF_DATASET)
        on = cfgmod.run_list(params, preset).items()
        return [f"{dataset}/{run}" for run, spec in on if dataset in spec["datasets"]]
    return leaves(tree)


def job_map(
    names: list[str],
    params: dict[str, Any],
    preset: str | None = None,
    aliases: list[dict[str, str]] | None = None,
) -> dict[str, list[str]]:
    """Logical run -> the run ids of the training jobs that serve it, one per seed.

    `aliases` (from `config.seed_run_aliases`) saves resolving the run list again for every item.
    """
    aliases = aliases or cfgmod.seed_run_aliases(params, preset)
    out: dict[str, list[str]] = {}
    for name in names:
        if name not in aliases[0]:
            raise RunListError(
                f"{EXPERIMENTS_FILE}: {name!r} is not a run of params.yaml's run list "
                "(runs: <name>: {datasets: [...]})"
            )
        out[name] = list(dict.fromkeys(a[name] for a in aliases if name in a))
    return out


def item_jobs(
    name: str,
    params: dict[str, Any],
    preset: str | None = None,
    aliases: list[dict[str, str]] | None = None,
) -> dict[str, list[str]]:
    """Logical run -> job run ids, for everything one table or figure reads."""
    aliases = aliases or cfgmod.seed_run_aliases(params, preset)
    return job_map(logical_runs(name, params, preset, aliases), params, preset, aliases)


def parse_run_options(items: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """`--run LOGICAL[=RUN_ID]` options (repeatable; one per seed) -> {logical: [run ids]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        logical, _, run_id = item.partition("=")
        logical, run_id = logical.strip(), (run_id or logical).strip()
        if logical.count("/") != 1 or not run_id.startswith(logical.split("/")[0] + "/"):
            raise RunListError(f"--run {item}: expected DATASET/RUN or DATASET/RUN=RUN_ID")
        out.setdefault(logical, []).append(run_id)
    return out


def format_run_options(mapping: dict[str, list[str]]) -> list[str]:
    """The inverse of `parse_run_options`: ["--run", "pst900/full", ...] (short when no alias)."""
    out: list[str] = []
    for logical, run_ids in mapping.items():
        for run_id in run_ids:
            out += ["--run", logical if run_id == logical else f"{logical}={run_id}"]
    return out


def summary_tables() -> list[str]:
    """The tables results/<preset>/summary.md draws its lines from (experiments.yaml)."""
    return list(experiments()["summary"]["tables"])


def summary_runs() -> list[str]:
    """Every logical run the summary reads."""
    return list(dict.fromkeys(lg for t in summary_tables() for lg in leaves(runs_tree(t))))
