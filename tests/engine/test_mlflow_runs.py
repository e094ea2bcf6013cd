"""What a training job and its evaluations leave in MLflow, written by the real `sartm train
--evaluate` and `sartm evaluate` commands: one training run, each evaluation a child run of it,
datasets, source, model, per-class scores, and the run links the commands print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from sartm.cli import cli
from sartm.config import save_config
from sartm.engine.provenance import manifest_hash
from sartm.engine.run_checkpoint import sha256_file

LINK = re.compile(
    r"^MLflow run (\w+): http://127\.0\.0\.1:5000/#/experiments/(\d+)/runs/(\w+)"
    r"\?workflowType=machine_learning$",
    re.M,
)


def test_training_run_and_evaluation_child_runs(cfg_factory, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")  # would show on a CPU
    cfg = cfg_factory("train.epochs=1", "train.similarity_epochs=[]", "eval.tsne_pixels=0")
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        trained = runner.invoke(cli, ["train", "--config", str(config_file), "--evaluate"])
        assert trained.exit_code == 0, trained.output
        again = runner.invoke(cli, ["evaluate", "--config", str(config_file), "--quiet"])
        assert again.exit_code == 0, again.output
        metrics = json.loads(Path("results/ci/eval/pst900/no-language/metrics.json").read_text())
        checkpoint = Path(metrics["checkpoint"]["path"]).resolve()
    links = LINK.findall(trained.output) + LINK.findall(again.output)
    assert len(links) == 3 and all(run == link_run for run, _, link_run in links), links
    (train_id, experiment, _), (first_eval_id, _, _), (second_eval_id, _, _) = links
    assert metrics["mlflow"] == {"experiment_id": experiment, "run_id": second_eval_id}

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    training = client.get_run(train_id)
    tags, logged = training.data.tags, training.data.metrics
    assert training.info.run_name == "pst900/no-language" and tags["stage"] == "train"
    assert tags["mlflow.source.name"] == "sartm train" and "mlflow.parentRunId" not in tags
    assert "Table V: components" in tags["mlflow.note.content"]  # pst900/no-language of ci
    assert "step" not in logged and not any(k.startswith(("eval/", "system/")) for k in logged)
    assert [m.step for m in client.get_metric_history(train_id, "test_miou")] == [1]
    digest = manifest_hash(data_root / "processed" / "synth-pst900")[:12]
    inputs = {
        d.dataset.name: ([t.value for t in d.tags], d.dataset.digest, json.loads(d.dataset.profile))
        for d in training.inputs.dataset_inputs
    }
    assert inputs == {
        "synth-pst900/train": (["training"], digest, {"num_rows": 8, "num_elements": 48}),
        "synth-pst900/test": (["model selection (test)"], digest, {"num_rows": 4, "num_elements": 24}),
    }  # fmt: skip

    evaluations = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{train_id}'"
    )
    assert {r.info.run_id for r in evaluations} == {first_eval_id, second_eval_id}
    child = client.get_run(second_eval_id)
    assert child.info.run_name == "pst900/no-language evaluate test"
    assert (
        child.data.tags["stage"] == "evaluate" and child.data.tags["mlflow.runType"] == "evaluation"
    )
    assert child.data.tags["mlflow.source.name"] == "sartm evaluate"
    assert child.info.start_time >= training.info.end_time  # training's duration stays its own
    scores = child.data.metrics
    assert scores["eval/test_miou"] == pytest.approx(metrics["test"]["miou"])
    assert scores["eval/test_best_miou"] == pytest.approx(metrics["test_best"]["miou"])
    for name, iou in zip(metrics["classes"], metrics["test"]["iou"]):
        assert scores[f"eval/test_iou/{name.replace('/', '_')}"] == pytest.approx(iou)
    assert scores["eval/test_thermal_blanked_miou"] == pytest.approx(
        metrics["robustness"]["thermal_blanked"]["miou"]
    )
    (evaluated,) = child.inputs.dataset_inputs
    assert evaluated.dataset.name == "synth-pst900/test" and evaluated.tags[0].value == "evaluation"
    artifacts = {a.path for a in client.list_artifacts(second_eval_id)}
    assert artifacts == {"eval", "predictions"}
    pngs = [a.path for a in client.list_artifacts(second_eval_id, "predictions")]
    assert len(pngs) == cfg.eval.save_predictions and all(p.endswith(".png") for p in pngs)

    # The scored checkpoint: one logged model, output of the training run, input of both
    # evaluations (the second one links it instead of copying the file again), with the scores.
    (model,) = client.search_logged_models([experiment])
    assert model.source_run_id == train_id and model.tags["checkpoint_sha256"] == sha256_file(
        checkpoint
    )
    assert [o.model_id for o in training.outputs.model_outputs] == [model.model_id]
    for run in (client.get_run(first_eval_id), child):
        assert [i.model_id for i in run.inputs.model_inputs] == [model.model_id]
    files = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id)}
    assert files == {checkpoint.name}
    assert {m.key for m in model.metrics} >= {"eval/test_miou", "eval/test_iou/background"}
