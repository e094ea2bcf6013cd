"""The whole pipeline on the `ci` preset (synthetic data, tiny model, one epoch): Snakemake runs
every stage, a second run has nothing to do, a changed run reruns only itself and what reads it;
DVC runs the same stages for one table. Slow: about 20 minutes on 2 CPU cores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO, copy_workflow, dag_jobs, params, snakemake

from sartm.report import runs

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """The project's commands on PATH (as in an activated environment)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_ci_preset_end_to_end_with_snakemake(tmp_path):
    root = copy_workflow(tmp_path)
    profile = ["--workflow-profile", "workflow/profiles/default"]
    snakemake(root, "all", "--cores", "2", *profile, "--config", "preset=ci", timeout=3 * 3600)

    for name in runs.table_names():
        md = root / "results" / "tables" / f"{name}.md"
        assert "SYNTHETIC" in md.read_text().splitlines()[0], name
        assert (md.with_suffix(".csv")).is_file() and (md.with_suffix(".tex")).is_file()
    for name in runs.figure_names():
        for ext in ("png", "pdf"):
            assert (root / "results" / "figures" / f"{name}.{ext}").stat().st_size > 0
    assert "SYNTHETIC" in (root / "results" / "summary.md").read_text()

    # a second invocation has nothing to do
    assert not [j for j in dag_jobs(root, "all", preset="ci") if j["needrun"]]
    dry = snakemake(root, "-n", "all_tables", "--config", "preset=ci")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # the browsable report holds every table and figure
    snakemake(root, "--report", "results/report.zip", "--config", "preset=ci")
    with zipfile.ZipFile(root / "results" / "report.zip") as report:
        names = "\n".join(report.namelist())
    for name in [*runs.table_names(), *runs.figure_names()]:
        assert f"{name}." in names, name

    # changing one run's override reruns that run and what reads it, nothing else
    p = params()
    p["runs"]["rank4"]["set"]["model.lora_rank"] = 5
    copy_workflow(root, p)
    pending = {
        (j["rule"], next(iter(j["wildcards"].values()), ""))
        for j in dag_jobs(root, "all", preset="ci")
        if j["needrun"]
    }
    readers = {
        ("table" if n in runs.table_names() else "figure", n)
        for n in [*runs.table_names(), *runs.figure_names()]
        if any("pst900/rank4" in ids for ids in runs.item_jobs(n, p, "ci").values())
    }
    expected = {
        ("run_config", "pst900/rank4"),
        ("train", "pst900/rank4"),
        ("evaluate", "pst900/rank4"),
        ("summary", ""),
        ("all", ""),
        *readers,
    }
    assert pending == expected
    assert ("table", "t4") in readers and ("table", "t1") not in readers


def test_dvc_repro_runs_the_same_stages(tmp_path):
    """`dvc repro` (the serial runner) builds Table I from scratch on the ci preset."""
    root = tmp_path / "project"
    p = params()
    p["preset"] = "ci"  # dvc.yaml follows the preset of params.yaml: regenerated for ci
    copy_workflow(root, p)
    made = subprocess.run(
        [sys.executable, "-m", "sartm", "pipeline", "dvc-yaml"], cwd=root, env=_env(),
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc = [str(Path(sys.executable).parent / "dvc")]
    run = subprocess.run(
        [*dvc, "repro", "table-t1"], cwd=root, env=_env(), capture_output=True, text=True,
        timeout=3600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    md = (root / "results" / "tables" / "t1.md").read_text()
    assert "SYNTHETIC" in md and "(preset ci)" in md
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {
        "configs", "tracking", "pretrain", "data-pst900", "text-pst900", "train-pst900--full",
    } <= set(lock)  # fmt: skip
    status = subprocess.run(
        [*dvc, "status", "table-t1"], cwd=root, env=_env(), capture_output=True, text=True
    )
    assert "up to date" in status.stdout, status.stdout
