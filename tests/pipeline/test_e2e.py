"""The whole pipeline on the `ci` preset (synthetic data, tiny model, one epoch), plus a tiny RGB-T
dataset of the user's that the test makes (params.yaml `datasets:`): Snakemake runs every stage,
a second run has nothing to do (nor has DVC), a changed run reruns only itself and what reads it;
DVC runs the same stages for two tables, after which Snakemake has nothing to do. Slow: about
10 minutes on 2 CPU cores."""

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

sys.path.insert(0, str(REPO / "tests" / "data"))
from rawdata import build_custom  # noqa: E402

from sartm import runs

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """The project's commands on PATH (as in an activated environment)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


OWN = "mine"  # the user's own dataset: custom layout, 3 classes, 32x24 images
OWN_TABLE = runs.own_table(OWN)


def _ci_params() -> dict:
    p = params()
    p["preset"] = "ci"  # dvc.yaml follows the preset of params.yaml: regenerated for ci
    p["datasets"] = {
        OWN: {
            "raw": "raw/mine",
            "classes": "raw/classes.yaml",
            "runs": ["full", "no-aux"],
            "set": {"data.crop_size": 64, "data.eval_size": 64, "train.batch_size": 2},
        }
    }
    return p


def _dvc_project(root: Path) -> Path:
    """The workflow for the ci preset and the user's dataset, its dvc.yaml, a DVC repository."""
    build_custom(root / "raw" / "mine")  # and raw/classes.yaml
    copy_workflow(root, _ci_params())
    made = subprocess.run(
        [sys.executable, "-m", "sartm", "pipeline", "dvc-yaml"], cwd=root, env=_env(),
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _dvc(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    dvc = str(Path(sys.executable).parent / "dvc")
    return subprocess.run(
        [dvc, *args], cwd=root, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def test_ci_preset_end_to_end_with_snakemake(tmp_path):
    root = _dvc_project(tmp_path)
    # another preset's results and data, as `make demo` leaves them: the ci run must not touch them
    demo = {
        root / "results/demo/eval/pst900/full/metrics.json": '{"demo": true}',
        root / "results/demo/train/pst900/full/last.pt": "demo checkpoint",
        root / "data/processed/synth-pst900/meta.json": '{"demo": true}',
    }
    for path, text in demo.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    profile = ["--workflow-profile", "workflow/profiles/default"]
    snakemake(root, "all", "--cores", "2", *profile, "--config", "preset=ci", timeout=3 * 3600)
    assert {path: path.read_text() for path in demo} == demo

    results = root / "results" / "ci"
    for name in [*runs.table_names(), OWN_TABLE]:
        md = results / "tables" / f"{name}.md"
        synthetic = "SYNTHETIC" in md.read_text().splitlines()[0]
        assert synthetic == (name != OWN_TABLE), name  # the user's own data is real
        assert (md.with_suffix(".csv")).is_file() and (md.with_suffix(".tex")).is_file()
    for name in runs.figure_names():
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 0
    assert "SYNTHETIC" in (results / "summary.md").read_text()
    own = (results / "tables" / f"{OWN_TABLE}.md").read_text()  # the user's data: no paper rows
    assert "| full " in own and "| no-aux " in own and "person" in own and "paper" not in own

    # a second invocation has nothing to do, and neither has DVC (Snakemake recorded dvc.lock)
    assert not [j for j in dag_jobs(root, "all", preset="ci") if j["needrun"]]
    dry = snakemake(root, "-n", "all_tables", "--config", "preset=ci")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    status = _dvc(root, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout[-3000:]
    repro = _dvc(root, "repro")
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout[-3000:]

    # the browsable report holds every table and figure
    snakemake(root, "--report", "results/ci/report.zip", "--config", "preset=ci")
    with zipfile.ZipFile(results / "report.zip") as report:
        names = "\n".join(report.namelist())
    for name in [*runs.table_names(), *runs.figure_names()]:
        assert f"{name}." in names, name

    # changing one run's override reruns that run and what reads it, nothing else
    p = _ci_params()
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
    """`dvc repro` (the serial runner) builds the user's dataset's table from scratch on the ci
    preset (set-up stages, stand-in, data, text cache, two runs); Snakemake then finds nothing to
    redo, and the training curves render offline."""
    root = _dvc_project(tmp_path / "project")
    run = _dvc(root, "repro", f"table-{OWN_TABLE}", timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    own = (root / "results" / "ci" / "tables" / f"{OWN_TABLE}.md").read_text()
    assert "| full " in own and "| no-aux " in own and "person" in own and "(preset ci)" in own
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {
        "configs", "tracking", "pretrain", "data-mine", "text-mine", "train-mine--full",
        "train-mine--no-aux", "evaluate-mine--full",
    } <= set(lock)  # fmt: skip
    status = _dvc(root, "status", f"table-{OWN_TABLE}")
    assert "up to date" in status.stdout, status.stdout
    dry = snakemake(root, "-n", f"results/ci/tables/{OWN_TABLE}.md", "--config", "preset=ci")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    # the training curves, grouped by table, on a page that needs no network
    shown = subprocess.run(
        [sys.executable, "-m", "sartm", "pipeline", "plots"], cwd=root, env=_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    page = (root / "results" / "ci" / "plots" / "index.html").read_text()
    assert 'id = "classes-mine-loss"' in page and 'id = "t4-miou"' in page
    assert '<script src="http' not in page  # vega from files beside the page, no CDN
    assert (root / "results" / "ci" / "plots" / "vega.js").stat().st_size > 100_000
