"""Running the real Snakefile in a temporary copy of the project's workflow files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ("Snakefile", "params.yaml", "workflow", "environment.yml", "dvc.yaml")


def copy_workflow(dst: Path, params: dict | None = None) -> Path:
    """Snakefile, workflow/ and params.yaml (or `params`) in `dst`; outputs go there too."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dst / name)
    if params is not None:
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def snakemake(cwd: Path, *args: str, check: bool = True, timeout: int = 300):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


# Builds the DAG through Snakemake's Python API (in a child process: Snakemake keeps global
# state) and prints every job: rule, wildcards, input, output, shell command, and whether it
# would run. The API has no public accessor for the jobs; `_workflow.dag` is the built DAG.
_DAG_SCRIPT = """
import contextlib, io, json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

args = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()), SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(config=args["config"]),
        snakefile=Path("Snakefile").resolve(),
        workdir=Path.cwd(),
    )
    workflow.dag(dag_settings=DAGSettings(targets=set(args["targets"]))).printrulegraph()
    dag = workflow._workflow.dag
    jobs = [
        {
            "rule": job.rule.name,
            "wildcards": dict(job.wildcards_dict),
            "input": [str(f) for f in job.input],
            "output": [str(f) for f in job.output],
            "log": [str(f) for f in job.log],
            "shellcmd": job.shellcmd,
            "needrun": bool(dag.needrun(job)),
        }
        for job in dag.jobs
    ]
print(json.dumps(jobs))
"""


def dag_jobs(cwd: Path, *targets: str, preset: str | None = None) -> list[dict]:
    """Every job of the DAG for `targets` (default: `all`)."""
    config = {"preset": preset} if preset else {}
    result = subprocess.run(
        [sys.executable, "-c", _DAG_SCRIPT, json.dumps({"targets": targets, "config": config})],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"building the DAG failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def of_rule(jobs: list[dict], rule: str) -> list[dict]:
    return [j for j in jobs if j["rule"] == rule]


def run_ids(jobs: list[dict], rule: str) -> list[str]:
    return [j["wildcards"]["run_id"] for j in of_rule(jobs, rule)]
