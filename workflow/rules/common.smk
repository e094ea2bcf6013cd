# Helpers shared by the rules. Everything comes from params.yaml through sartm.config (runs,
# presets, aliases), sartm.report.runs (which tables and figures a preset has) and sartm.paths (the
# one path convention). sartm/report/results.py uses the same paths and the same reading of
# sartm/resources/experiments.yaml (tests/pipeline checks that Snakemake and DVC agree).

import json
import os
import sys
from pathlib import Path

import yaml

from sartm import config as sartm_config
from sartm import paths
from sartm.report import runs as sartm_runs


envvars:
    "PATH",


# The commands (sartm, torchrun) run from the environment Snakemake runs in; each rule also names
# the conda environment of the project (environment.yml) for `--software-deployment-method conda`.
os.environ["PATH"] = (
    f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)

PRESET = config["preset"]
if PRESET not in config["presets"]:
    raise ValueError(
        f"params.yaml: preset {PRESET!r} is not defined; "
        f"allowed values: {', '.join(config['presets'])}"
    )
# The commands read params.yaml themselves (handed the preset or a resolved run config), so the
# preset is the one setting that may be overridden on the command line (--config preset=NAME).
_ON_DISK = sartm_config.load_params("params.yaml")
if any(config.get(k) != v for k, v in _ON_DISK.items() if k != "preset"):
    raise ValueError(
        "--config: only preset=NAME can be overridden on the command line; "
        "change other settings in params.yaml"
    )
# One training job per distinct canonical configuration (and seed), keyed by run id.
JOBS = {c.run_id: c for c in sartm_config.pipeline_runs(config, PRESET)}
# For each seed: `dataset/run` of the run list -> the run id of the job that serves it.
ALIASES = [
    sartm_config.run_aliases(config, PRESET, seed_index=i)
    for i in range(sartm_config.seed_count(config, PRESET))
]
# The offline SAM2 stand-in of the preset (made only when some job loads it).
PRETRAIN = sartm_config.pretrain_settings(config, PRESET)
# The settings of each logical dataset outside any run (data source, data root, synth).
BASE = {
    ds: sartm_config.resolve(config, dataset=ds, preset=PRESET)
    for ds in sartm_config.LOGICAL_DATASETS
}
EXPERIMENTS = yaml.safe_load(
    (Path(sartm_config.__file__).parent / "resources" / "experiments.yaml").read_text()
)


def _leaves(tree):
    if isinstance(tree, str):
        return [tree]
    out = []
    for value in tree.values() if isinstance(tree, dict) else ():
        out += _leaves(value)
    return list(dict.fromkeys(out))


# Tables and figures whose runs all exist in the preset (the demo has runs of its own).
TABLES = sartm_runs.table_names(config, PRESET)
FIGURES = sartm_runs.figure_names(config, PRESET)
RESULTS = paths.RESULTS
DATA_ROOT = Path(BASE["mfnet"].data.root)
if any(Path(c.data.root) != DATA_ROOT for c in [*BASE.values(), *JOBS.values()]):
    raise ValueError(
        "params.yaml: data.root must be the same for every run of the pipeline"
    )
DEFAULT_RESOURCES = {"gpu": 0, "threads": 2, "mem_mb": 4000, "runtime": 60}
CONDA_ENV = "../../environment.yml"  # relative to workflow/rules/


wildcard_constraints:
    run_id=r"[^/]+/[^/]+(/seed\d+)?",
    table="|".join(TABLES),
    figure="|".join(FIGURES),
    source=r"synth-[a-z0-9]+",
    cache=r"(synth-)?(mfnet|pst900|fmb)|custom-[A-Za-z0-9_.-]+",
    dataset="mfnet|pst900|fmb",


# --- paths (the same helpers as sartm/report/results.py) ------------------------------------


def config_file(run_id):
    return str(RESULTS / "configs" / f"{run_id}.yaml")


def log_file(step, name):
    return str(RESULTS / "logs" / step / f"{name}.log")


def benchmark_file(step, run_id):
    return str(RESULTS / "benchmarks" / step / f"{run_id}.tsv")


def stamp_file(name):
    return str(RESULTS / "pipeline" / name)


def train_done(run_id):
    """Written last by `sartm train`; checkpoints beside it survive a rerun (auto-resume)."""
    return str(paths.train_dir(run_id) / "train_metrics.json")


def metrics_file(run_id):
    return str(paths.eval_dir(run_id) / "metrics.json")


def table_files(name):
    return [str(paths.tables_dir() / f"{name}.{ext}") for ext in ("md", "csv", "tex")]


def figure_files(name):
    return [str(paths.figures_dir() / f"{name}.{ext}") for ext in ("png", "pdf")]


SUMMARY = str(RESULTS / "summary.md")


# --- runs --------------------------------------------------------------------------------------


def job(run_id):
    if run_id not in JOBS:
        raise ValueError(
            f"{run_id!r} is not a training job of preset {PRESET!r}; "
            f"jobs: {', '.join(JOBS)}"
        )
    return JOBS[run_id]


def data_dir(cfg):
    return str(paths.processed_dir(cfg.data.dataset, Path(cfg.data.root)))


def text_file(cfg):
    return str(paths.text_cache(cfg.data.dataset, Path(cfg.data.root)))


def run_identity(run_id):
    """What makes a run: its canonical settings minus execution-only keys (sartm.config.hash)."""
    cfg = job(run_id)
    identity = {
        "run_id": run_id,
        "preset": cfg.preset,
        "settings": cfg.training_identity(),
        # evaluation reads these from the config file; a finished run then only resumes
        "eval": cfg.sections()["eval"],
    }
    return json.dumps(identity, sort_keys=True)


def runs_tree(name):
    group = "tables" if name in EXPERIMENTS["tables"] else "figures"
    spec = EXPERIMENTS[group][name]
    return (
        EXPERIMENTS["tables"][spec["table"]]["runs"]
        if "table" in spec
        else spec["runs"]
    )


def item_jobs(name):
    """Logical run -> the run ids of its jobs (one per seed), for a table or figure."""
    tree = runs_tree(name)
    if tree == "all":
        logical = [run_id for run_id, c in JOBS.items() if c.seed_index == 0]
    else:
        logical = _leaves(tree)
    unknown = [lg for lg in logical if lg not in ALIASES[0]]
    if unknown:
        raise ValueError(
            f"experiments.yaml: {name}: {unknown} not in params.yaml's run list"
        )
    return {
        lg: list(dict.fromkeys(a[lg] for a in ALIASES if lg in a)) for lg in logical
    }


def summary_jobs():
    out = {}
    for name in EXPERIMENTS["summary"]["tables"]:
        out.update(item_jobs(name))
    return out


def run_options(mapping):
    """["--run", "pst900/full", "--run", "mfnet/w2-10000=mfnet/no-language", ...]"""
    out = []
    for logical, run_ids in mapping.items():
        for run_id in run_ids:
            out += ["--run", logical if run_id == logical else f"{logical}={run_id}"]
    return out


def item_metrics(mapping):
    return [metrics_file(r) for run_ids in mapping.values() for r in run_ids]


def all_jobs():
    return list(JOBS)


# --- resources ---------------------------------------------------------------------------------


def preset_resources(step):
    """The preset's `resources.<step>` (following `extends`), over DEFAULT_RESOURCES."""
    chain, name = [], PRESET
    while name:
        chain.insert(0, config["presets"][name])
        name = config["presets"][name].get("extends")
    out = dict(DEFAULT_RESOURCES)
    for preset in chain:
        out.update(preset.get("resources", {}).get(step, {}))
    return out


TRAIN_RESOURCES = preset_resources("train")
EVAL_RESOURCES = preset_resources("evaluate")


# --- data and text -------------------------------------------------------------------------------


def synth_args(source):
    """Explicit generator settings of the preset, so a changed setting regenerates the data."""
    logical = source.removeprefix(sartm_config.SYNTHETIC_PREFIX)
    synth = BASE[logical].synth
    args = [f"--samples-{split}={n}" for split, n in sorted(synth.samples.items())]
    return args + [f"--width={synth.width}", f"--seed={synth.seed}"]


def text_settings(source):
    """`--set text.*` for the cache of one data source: every run reading it must agree."""
    seen = {
        (c.text.model, c.text.pretrained, c.text.template)
        for c in JOBS.values()
        if c.data.dataset == source and c.loss.w3 > 0
    }
    if len(seen) != 1:
        raise ValueError(
            f"params.yaml: the runs on {source} with loss.w3 > 0 use {len(seen)} different "
            "text settings; the text cache is one file per dataset"
        )
    ((model, pretrained, template),) = seen
    values = {"model": model, "pretrained": pretrained, "template": template}
    return [f"--set=text.{k}={json.dumps(v)}" for k, v in values.items()]


def text_sources():
    """Data sources whose cache some job reads (loss.w3 > 0)."""
    return sorted({c.data.dataset for c in JOBS.values() if c.loss.w3 > 0})


def train_inputs(wildcards):
    cfg = job(wildcards.run_id)
    inputs = {
        "config": config_file(wildcards.run_id),
        "data": data_dir(cfg),
        "tracking": ancient(stamp_file("tracking.txt")),
    }
    if cfg.loss.w3 > 0:
        inputs["text"] = text_file(cfg)
    if sartm_config.uses_stand_in(cfg, config):
        inputs["base"] = PRETRAIN["out"]
    return inputs


def figure_inputs(wildcards):
    mapping = item_jobs(wildcards.figure)
    inputs = {"metrics": item_metrics(mapping)}
    spec = EXPERIMENTS["figures"][wildcards.figure]
    if (
        spec["kind"] == "qualitative"
    ):  # the inputs and ground truth come from the dataset
        inputs["data"] = sorted({data_dir(job(r[0])) for r in mapping.values()})
    if spec["kind"] in ("similarity", "curves"):  # files written by training
        inputs["trained"] = [train_done(r[0]) for r in mapping.values()]
    return inputs


def table_inputs(wildcards):
    mapping = item_jobs(wildcards.table)
    inputs = {"metrics": item_metrics(mapping)}
    if EXPERIMENTS["tables"][wildcards.table]["kind"] == "time":
        inputs["benchmarks"] = [
            benchmark_file(step, r)
            for run_ids in mapping.values()
            for r in run_ids
            for step in ("train", "evaluate")
        ]
    return inputs
