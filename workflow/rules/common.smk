# Wiring only: the pipeline of the preset (its jobs, every path, every command's arguments) is
# defined once in the package, sartm.pipeline.plan.Plan, which the dvc.yaml generator and
# `sartm pipeline ...` read as well. Everything a preset makes lives under results/<preset>/.

import json
import os
import sys
from pathlib import Path

from sartm import config as sartm_config
from sartm import paths
from sartm.pipeline.plan import Plan, wildcard_patterns


envvars:
    "PATH",


# The commands (sartm, torchrun) run from the environment Snakemake runs in; each rule also names
# the conda environment of the project (environment.yml) for `--software-deployment-method conda`.
os.environ["PATH"] = (
    f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)

PLAN = Plan(config, config["preset"])
PRESET = PLAN.preset
# The commands read params.yaml themselves (handed the preset or a resolved run config), so the
# preset is the one setting that may be overridden on the command line (--config preset=NAME).
_ON_DISK = sartm_config.load_params("params.yaml")
if any(config.get(k) != v for k, v in _ON_DISK.items() if k != "preset"):
    raise ValueError(
        "--config: only preset=NAME can be overridden on the command line; "
        "change other settings in params.yaml"
    )
# dvc.yaml holds the stages of params.yaml's preset (sartm pipeline dvc-yaml)
DVC_PRESET = _ON_DISK["preset"]
RESULTS = PLAN.results
DATA_ROOT = PLAN.data_root
TABLES, FIGURES = PLAN.tables, PLAN.figures
CONDA_ENV = "../../environment.yml"  # relative to workflow/rules/
TRAIN_RESOURCES = PLAN.resources("train")
EVAL_RESOURCES = PLAN.resources("evaluate")
DATA_WILDCARDS = wildcard_patterns()  # from the built-in datasets (sartm.data.builtin)


wildcard_constraints:
    run_id=r"[^/]+/[^/]+(/seed\d+)?",
    table="|".join(TABLES) or "none",
    figure="|".join(FIGURES) or "none",
    source=DATA_WILDCARDS["source"],
    cache=DATA_WILDCARDS["cache"],
    dataset=DATA_WILDCARDS["dataset"],
    name=sartm_config.CUSTOM_NAME_CHARS,


def train_inputs(wildcards):
    inputs = PLAN.train_inputs(wildcards.run_id)
    # logging into the store never makes finished runs look outdated
    inputs["tracking"] = ancient(str(PLAN.stamp_file("tracking.txt")))
    return inputs


def table_inputs(wildcards):
    return PLAN.table_inputs(wildcards.table)


def figure_inputs(wildcards):
    return PLAN.figure_inputs(wildcards.figure)
