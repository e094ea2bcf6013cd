"""`sartm pipeline ...`: dvc.yaml generation, the DVC set-up stages, the job list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from pipeline_helpers import REPO, params

from sartm import config as cfgmod
from sartm.cli import cli
from sartm.pipeline import dvcgen
from sartm.pipeline.plan import Plan


def _params_file(tmp_path, p: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def test_dvc_yaml_command_writes_and_checks(tmp_path):
    out = tmp_path / "dvc.yaml"
    args = ["pipeline", "dvc-yaml", "--params", str(REPO / "params.yaml"), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert out.read_text() == (REPO / "dvc.yaml").read_text()
    assert CliRunner().invoke(cli, [*args, "--check"]).exit_code == 0
    out.write_text(out.read_text().replace("train-pst900--rank4", "train-pst900--rank5"))
    stale = CliRunner().invoke(cli, [*args, "--check"])
    assert stale.exit_code != 0 and "stale" in stale.output


def test_dvc_stages_refuse_a_dvc_yaml_of_another_preset(tmp_path, monkeypatch):
    """Each preset has its own jobs (the demo adds seeds and a run): after switching the preset in
    params.yaml, DVC's first stage stops until dvc.yaml is regenerated."""
    monkeypatch.chdir(tmp_path)
    p = params()
    _params_file(tmp_path, p)
    assert CliRunner().invoke(cli, ["pipeline", "dvc-yaml"]).exit_code == 0
    assert CliRunner().invoke(cli, ["pipeline", "configs"]).exit_code == 0
    p["preset"] = "paper"
    _params_file(tmp_path, p)
    refused = CliRunner().invoke(cli, ["pipeline", "configs"])
    assert refused.exit_code != 0 and "does not match preset 'paper'" in refused.output
    assert CliRunner().invoke(cli, ["pipeline", "dvc-yaml"]).exit_code == 0
    assert "train-pst900--random-encoder" not in (tmp_path / "dvc.yaml").read_text()
    again = CliRunner().invoke(cli, ["pipeline", "configs"])
    assert again.exit_code == 0 and "30 run configs" in again.output


def test_config_and_jobs_commands(tmp_path):
    path = _params_file(tmp_path, params())
    out = tmp_path / "cfg.yaml"
    args = ["pipeline", "config", "mfnet/w2-100", "--params", str(path), "--preset", "paper"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = cfgmod.load_config(out)
    assert (cfg.run_id, cfg.preset, cfg.loss.w2, cfg.loss.w3) == (
        "mfnet/w2-100",
        "paper",
        100.0,
        0.0,
    )
    assert cfg.hash() in result.output
    unknown = CliRunner().invoke(cli, ["pipeline", "config", "mfnet/rank4", "--params", str(path)])
    assert unknown.exit_code != 0 and "not a training job" in unknown.output
    jobs = CliRunner().invoke(cli, ["pipeline", "jobs", "--params", str(path)])
    assert jobs.exit_code == 0 and len(jobs.output.strip().splitlines()) == 33  # demo


def test_data_stage_makes_the_folder_the_rules_read(tmp_path, monkeypatch):
    """DVC's data stage runs the command of Snakemake's synth rule and declares the folder that
    rule writes (the same Plan), so either orchestrator leaves what the other expects."""
    monkeypatch.chdir(tmp_path)
    p = params()
    p["preset"] = "ci"
    p["presets"]["ci"]["set"]["synth.samples"] = {"train": 2, "val": 1, "test": 1}
    p["presets"]["ci"]["set"]["synth.width"] = 64
    _params_file(tmp_path, p)  # the sartm commands read their settings from ./params.yaml
    plan = Plan(p)
    stage = dvcgen.stages(p)["data-pst900"]
    assert stage["outs"] == [{"data/ci/processed/synth-pst900": {"cache": False}}]
    assert stage["cmd"] == plan.synth_command("synth-pst900")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):  # the second run replaces the stand-in it made (sartm's own folder)
        subprocess.run(stage["cmd"], shell=True, check=True, env=env, capture_output=True)
    meta = json.loads((tmp_path / "data/ci/processed/synth-pst900/meta.json").read_text())
    assert meta["synthetic"] and meta["splits"] == {"train": 2, "test": 1}
    text = dvcgen.stages(p)["text-pst900"]
    assert text["cmd"] == plan.text_command("synth-pst900")
    assert text["outs"] == [{"data/ci/text/synth-pst900.pt": {"cache": False}}]
    paper = Plan(p, "paper")
    assert paper.data_commands("pst900") == [
        "sartm data download pst900 --root data --no-progress",
        "sartm data prepare pst900 --raw data/raw/pst900 --out data/processed/pst900 --force"
        " --no-progress",
    ]


def test_demo_runs_snakemake_on_target_all_with_the_default_profile(tmp_path, monkeypatch):
    from pipeline_helpers import copy_workflow

    monkeypatch.chdir(copy_workflow(tmp_path))
    result = CliRunner().invoke(
        cli, ["pipeline", "demo", "--cores", "1", "--no-report", "--", "--dry-run", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
