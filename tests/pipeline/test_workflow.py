"""The Snakefile's DAG (built through Snakemake's API on a temporary copy) and its DVC twin."""

from __future__ import annotations

import configparser
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO, copy_workflow, dag_jobs, of_rule, params, run_ids, snakemake

from sartm import config as cfgmod
from sartm import runs
from sartm.pipeline import configs as run_configs
from sartm.pipeline import dvcgen
from sartm.pipeline.plan import Plan

SETUP_RULES = {"run_config", "synth", "download", "prepare", "text_cache", "tracking", "pretrain"}


def _item(jobs: list[dict], name: str) -> dict:
    rule = "table" if name in runs.table_names() else "figure"
    (job,) = [j for j in of_rule(jobs, rule) if j["wildcards"][rule] == name]
    return job


@pytest.fixture(scope="module")
def dags(tmp_path_factory):
    """The jobs of target `all` for each preset."""
    root = copy_workflow(tmp_path_factory.mktemp("workflow"))
    return {preset: dag_jobs(root, preset=preset) for preset in ("demo", "paper", "ci")}


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_dag_trains_every_job_once_and_builds_every_table_and_figure(dags, preset):
    jobs, p = dags[preset], params()
    trained = run_ids(jobs, "train")
    assert len(trained) == len(set(trained)), "a training job appears twice"
    assert set(trained) == {c.run_id for c in cfgmod.pipeline_runs(p, preset)}
    assert sorted(run_ids(jobs, "evaluate")) == sorted(trained)
    if preset == "paper":
        assert len(trained) == 30
    tables, figures = runs.table_names(p, preset), runs.figure_names(p, preset)
    assert ("foundation" in tables) == (preset == "demo")  # a table of the demo's own runs
    assert {j["wildcards"]["table"] for j in of_rule(jobs, "table")} == set(tables)
    assert {j["wildcards"]["figure"] for j in of_rule(jobs, "figure")} == set(figures)
    summary = [f"results/{preset}/summary.{ext}" for ext in ("md", "html")]
    assert of_rule(jobs, "summary")[0]["output"] == [*summary, f"results/{preset}/scores.json"]
    plan = Plan(p, preset)
    for name in [*tables, *figures]:
        job, needed = _item(jobs, name), runs.item_jobs(name, p, preset)
        expected = {plan.metrics_file(r).as_posix() for ids in needed.values() for r in ids}
        evals = {f for f in job["input"] if f.startswith(f"results/{preset}/eval/")}
        assert evals == expected, name
        assert " ".join(runs.format_run_options(needed)) in job["shellcmd"], name
    # every run the tables and figures read is trained and evaluated
    read = {r for name in tables for ids in runs.item_jobs(name, p, preset).values() for r in ids}
    assert read <= set(trained)


def test_presets_map_logical_datasets_to_their_sources(dags):
    demo, paper = dags["demo"], dags["paper"]
    sources = ("mfnet", "pst900", "fmb")
    assert {j["output"][0] for j in of_rule(demo, "synth")} == {
        f"data/processed/synth-{d}" for d in sources
    }
    assert not of_rule(demo, "download") and not of_rule(paper, "synth")
    assert {j["output"][0] for j in of_rule(paper, "prepare")} == {
        f"data/processed/{d}" for d in sources
    }
    assert {j["output"][0] for j in of_rule(paper, "download")} == {
        f"data/raw/{d}" for d in sources
    }
    # otherwise the same graph, plus the demo's own runs and its pretrained SAM2 stand-in
    extra = {"pst900/random-encoder", "pst900/full/seed1", "pst900/full/seed2"}
    assert set(run_ids(demo, "train")) - set(run_ids(paper, "train")) == extra
    assert set(run_ids(paper, "train")) <= set(run_ids(demo, "train"))
    assert len(of_rule(paper, "train")) == 30 and not of_rule(paper, "pretrain")
    (pretrain,) = of_rule(demo, "pretrain")
    assert pretrain["output"][0] == "weights/stand-in/sam2_test_hiera_tiny_synthetic.pt"
    for rule in ("table", "figure", "summary"):
        paper_out = {str(j["output"]).replace("/paper/", "/demo/") for j in of_rule(paper, rule)}
        assert paper_out <= {str(j["output"]) for j in of_rule(demo, rule)}, rule
    # every command is handed the resolved config of its run (which carries the preset)
    (train,) = [j for j in of_rule(paper, "train") if j["wildcards"]["run_id"] == "pst900/full"]
    command = "sartm train --config results/paper/configs/pst900/full.yaml --restart-if-changed"
    assert command in train["shellcmd"]
    assert {
        "results/paper/configs/pst900/full.yaml",
        "data/processed/pst900",
        "data/text/pst900.pt",
    } <= set(train["input"])
    (text,) = [j for j in of_rule(paper, "text_cache") if j["wildcards"]["cache"] == "pst900"]
    assert "--preset paper" in text["shellcmd"] and "openai" in text["shellcmd"]


def test_presets_write_side_by_side(dags):
    """No file one preset's pipeline writes is written, or deleted, by another's: results live in
    results/<preset>/, and the ci preset's smaller stand-ins and SAM2 stand-in in files of their
    own. (The MLflow store is shared; each preset logs into its own experiment.)"""
    outputs = {
        preset: {f for j in jobs for f in j["output"] + j["log"]} for preset, jobs in dags.items()
    }
    for preset, files in outputs.items():
        assert all(f.startswith((f"results/{preset}/", "data/", "weights/")) for f in files)
        for other, theirs in outputs.items():
            if other != preset:
                clashes = {f for f in files for t in theirs if f == t or t.startswith(f + "/")}
                assert not clashes, (preset, other, sorted(clashes)[:5])


@pytest.mark.parametrize("target", ["t4", "f7", "curves_t6"])
def test_one_target_builds_only_what_it_needs(tmp_path, target):
    folder, ext = ("tables", "md") if target in runs.table_names() else ("figures", "png")
    jobs = dag_jobs(copy_workflow(tmp_path), f"results/demo/{folder}/{target}.{ext}")
    needed = {r for ids in runs.item_jobs(target, params()).values() for r in ids}
    assert set(run_ids(jobs, "train")) == needed
    assert set(run_ids(jobs, "evaluate")) == needed
    assert [j["rule"] for j in jobs if j["rule"] not in SETUP_RULES | {"train", "evaluate"}] == [
        folder[:-1]
    ]


def test_aliases_and_seeds(tmp_path):
    """Identical runs are one job read by several tables; every run repeats per seed."""
    p = params()
    p["seeds"] = [1, 2]
    p["runs"]["rank8"]["set"] = {"model.lora_rank": 16}  # now the same as pst900/full
    jobs = dag_jobs(copy_workflow(tmp_path, p), preset="paper")
    trained = run_ids(jobs, "train")
    assert len(trained) == len(set(trained)) == 2 * 29
    assert "pst900/rank8" not in trained and "pst900/full/seed2" in trained
    t4 = _item(jobs, "t4")
    assert "--run pst900/rank8=pst900/full --run pst900/rank8=pst900/full/seed2" in t4["shellcmd"]
    assert {
        "results/paper/eval/pst900/full/metrics.json",
        "results/paper/eval/pst900/full/seed2/metrics.json",
        "results/paper/eval/pst900/rank4/seed2/metrics.json",
    } <= set(t4["input"])


def test_text_cache_only_where_language_is_distilled(tmp_path):
    p = params()
    p["presets"]["demo"]["per_dataset"]["fmb"]["loss.w3"] = 0  # no fmb run distils language
    jobs = dag_jobs(copy_workflow(tmp_path, p), "all_tables")
    caches = {j["wildcards"]["cache"] for j in of_rule(jobs, "text_cache")}
    assert caches == {"synth-pst900", "synth-mfnet"}
    fmb = [j for j in of_rule(jobs, "train") if j["wildcards"]["run_id"].startswith("fmb/")]
    assert fmb and all(not any("data/text" in f for f in j["input"]) for j in fmb)
    # fmb/no-language is now fmb/full (the first name in params.yaml): one job, two table rows
    assert "fmb/no-language" not in run_ids(jobs, "train")
    assert "--run fmb/no-language=fmb/full" in _item(jobs, "t5")["shellcmd"]


def test_a_dataset_of_your_own_goes_through_every_stage(tmp_path):
    """Declared in params.yaml with the runs to train on it: prepared from its raw folder, its
    class names embedded, trained, evaluated and given its per-class table, by the same commands
    in Snakemake's DAG and in dvc.yaml."""
    p = params()
    p["preset"] = "paper"
    p["datasets"] = {"mine": {"raw": "raw/mine", "classes": "raw/classes.yaml", "runs": ["full"]}}
    root = copy_workflow(tmp_path, p)
    (root / "raw" / "mine").mkdir(parents=True)
    (root / "raw" / "classes.yaml").write_text("- {name: background, color: [0, 0, 0]}\n")
    assert "classes-mine" in runs.table_names(p, "paper")
    jobs = dag_jobs(root, "results/paper/tables/classes-mine.md", preset="paper")
    assert run_ids(jobs, "train") == ["mine/full"] and run_ids(jobs, "evaluate") == ["mine/full"]
    (prepare,) = of_rule(jobs, "prepare_own")
    assert prepare["output"] == ["data/processed/custom-mine"]
    assert set(prepare["input"]) == {"raw/mine", "raw/classes.yaml"}
    (text,) = of_rule(jobs, "text_cache")
    assert (
        text["input"] == ["data/processed/custom-mine"] and "embed custom-mine" in text["shellcmd"]
    )
    (train,) = of_rule(jobs, "train")
    assert {"data/processed/custom-mine", "data/text/custom-mine.pt"} <= set(train["input"])
    (table,) = of_rule(jobs, "table")
    assert "--run mine/full " in table["shellcmd"] + " "
    dvc = dvcgen.stages(p)
    assert dvc["data-mine"]["cmd"] in prepare["shellcmd"]
    assert dvc["data-mine"]["deps"] == ["raw/mine", "raw/classes.yaml"]
    assert dvc["text-mine"]["cmd"] in text["shellcmd"]
    assert dvc["table-classes-mine"]["cmd"] in table["shellcmd"]


def test_dvc_yaml_has_the_same_stages_and_commands(dags):
    """dvc.yaml (generated) and the Snakefile: same jobs, outputs, dependencies and commands."""
    p = params()
    jobs, dvc, plan = dags[p["preset"]], dvcgen.stages(p), Plan(p)
    evals = f"results/{plan.preset}/eval/"

    def outs(stage: dict) -> set[str]:
        return {next(iter(o)) for kind in ("outs", "metrics") for o in stage.get(kind, [])}

    for rule in ("train", "evaluate"):
        assert sum(n.startswith(f"{rule}-") for n in dvc) == len(of_rule(jobs, rule))
        for job in of_rule(jobs, rule):
            stage = dvc[dvcgen.stage_name(rule, job["wildcards"]["run_id"])]
            assert set(job["output"]) <= outs(stage)
            assert stage["cmd"] in job["shellcmd"]
            assert plan.config_file(job["wildcards"]["run_id"]).as_posix() in stage["deps"]
            assert set(job["input"]) <= set(stage["deps"])  # (evaluation also: last.pt)
    for rule in ("table", "figure"):
        assert sum(n.startswith(f"{rule}-") for n in dvc) == len(of_rule(jobs, rule))
        for job in of_rule(jobs, rule):
            stage = dvc[dvcgen.stage_name(rule, job["wildcards"][rule])]
            assert set(job["output"]) == outs(stage)
            assert stage["cmd"] in job["shellcmd"]
            if rule == "figure":  # the same files (a table also reads Snakemake's benchmarks)
                assert set(stage["deps"]) == set(job["input"]), job["wildcards"]
            metrics = {f for f in job["input"] if f.startswith(evals)}
            assert metrics == {d for d in stage["deps"] if d.startswith(evals)}
    assert {j["output"][0] for j in of_rule(jobs, "run_config")} == outs(dvc["configs"])
    assert set(of_rule(jobs, "summary")[0]["output"]) == outs(dvc["summary"])
    assert set(of_rule(jobs, "tracking")[0]["output"]) == outs(dvc["tracking"])


def test_committed_dvc_yaml_is_not_stale():
    assert not dvcgen.is_stale(cfgmod.load_params(REPO / "params.yaml"), REPO / "dvc.yaml"), (
        "dvc.yaml is stale: run `sartm pipeline dvc-yaml`"
    )


def test_dvc_yaml_goes_stale_when_the_run_list_changes(tmp_path):
    p = cfgmod.load_params(REPO / "params.yaml")
    path = dvcgen.write(p, tmp_path / "dvc.yaml")
    assert not dvcgen.is_stale(p, path)
    changed = copy.deepcopy(p)
    changed["runs"]["rank2"] = {"datasets": ["pst900"], "set": {"model.lora_rank": 2}}
    assert dvcgen.is_stale(changed, path)
    assert "train-pst900--rank2" in dvcgen.stages(changed)
    names = yaml.safe_load(path.read_text())["stages"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)


def test_dvc_config_is_offline():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc" / "config")
    assert cfg["core"]["analytics"] == "false"
    assert cfg["core"]["check_update"] == "false"


def test_run_config_rewritten_only_when_the_training_identity_changes(tmp_path, monkeypatch):
    """Snakemake (params trigger) and DVC (sartm pipeline configs) rewrite the same files."""
    p = params()
    root = copy_workflow(tmp_path / "snakemake", p)
    jobs = ["pst900/full", "pst900/rank4", "pst900/rank8", "mfnet/full", "fmb/no-aux"]
    targets = [Plan(p, "ci").config_file(run_id).as_posix() for run_id in jobs]
    snakemake(root, *targets, "--cores", "1", "--config", "preset=ci")
    assert not [j for j in dag_jobs(root, *targets, preset="ci") if j["needrun"]]

    p["train"]["val_every"] = 2  # execution-only settings never retrain
    p["tracking"]["experiment"] = "elsewhere"
    copy_workflow(root, p)
    assert not [j for j in dag_jobs(root, *targets, preset="ci") if j["needrun"]]

    p["runs"]["rank4"]["set"]["model.lora_rank"] = 5
    copy_workflow(root, p)
    pending = [j["output"] for j in dag_jobs(root, *targets, preset="ci") if j["needrun"]]
    assert pending == [["results/ci/configs/pst900/rank4.yaml"]]

    # the DVC stage: the same files, rewritten by the same rule
    (tmp_path / "dvc").mkdir()
    monkeypatch.chdir(tmp_path / "dvc")
    first = run_configs.write_configs(Plan(params(), "ci"))
    assert len(first) == 33 and all(first.values())  # ci: the demo's 30 + 3 of its own
    assert not any(run_configs.write_configs(Plan(params(), "ci")).values())
    changed = run_configs.write_configs(Plan(p, "ci"))
    rank4 = Plan(p, "ci").config_file("pst900/rank4")
    assert [path for path, rewritten in changed.items() if rewritten] == [rank4]
    assert cfgmod.load_config(rank4).model.lora_rank == 5


def test_lint_and_format(tmp_path):
    root = copy_workflow(tmp_path)
    lint = snakemake(root, "--lint", check=False)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout
    snakefmt = Path(sys.executable).parent / "snakefmt"
    fmt = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "workflow/rules"], cwd=root, capture_output=True
    )
    assert fmt.returncode == 0, fmt.stderr.decode()


def test_profiles(tmp_path):
    root = copy_workflow(tmp_path)
    default = yaml.safe_load((root / "workflow/profiles/default/config.yaml").read_text())
    assert default["resources"] == ["gpu=1"]
    slurm = yaml.safe_load((root / "workflow/profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["set-resources"]["train"]["slurm_partition"]
    target = "results/demo/train/pst900/full/train_metrics.json"
    local = snakemake(
        root, target, "-n", "-p", "--workflow-profile", "workflow/profiles/default", "--cores", "2"
    )
    assert "workflow/profiles/default" in local.stdout + local.stderr
    assert "sartm train --config results/demo/configs/pst900/full.yaml" in local.stdout
    # the paper preset asks for a GPU; a rule given more GPUs hands them to the training step, and
    # its threads (8) are not capped at --cores (1 when unset, for remote jobs): the profile's cores
    target = target.replace("/demo/", "/paper/")
    cluster = snakemake(
        root, target, "-n", "-p", "--workflow-profile", "workflow/profiles/slurm",
        "--config", "preset=paper", "--set-resources", "train:gpu=2",
    )  # fmt: skip
    assert "torchrun --standalone --nproc_per_node=2 -m sartm train" in cluster.stdout
    assert "OMP_NUM_THREADS=8" in cluster.stdout
    assert slurm["slurm-status-command"] == "squeue"  # no accounting database: sacct cannot answer
    paper = snakemake(root, target, "-n", "-p", "--config", "preset=paper")
    assert "torchrun" not in paper.stdout and "sartm train --config" in paper.stdout
