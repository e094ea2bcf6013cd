"""The training loop on the real code path: tiny synthetic data, the micro SAM2 encoder, CPU."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from sartm.config import load_config
from sartm.engine import run_checkpoint as ck
from sartm.engine import train as train_module
from sartm.engine.optim import lr_factor
from sartm.engine.train import TrainingError, train


def test_train_writes_everything_needed_to_resume(cfg_factory, tmp_path):
    cfg = cfg_factory()
    results = tmp_path / "results"
    out = train(cfg, results_root=results, quiet=True)
    run_dir = results / "train" / "pst900" / "no-language"
    assert out["epochs"] == 2 and out["steps"] == 4 and out["selection_split"] == "test"
    assert json.loads((run_dir / "train_metrics.json").read_text())["steps"] == 4
    assert load_config(run_dir / "config.yaml").hash() == cfg.hash()

    state = ck.load_checkpoint(run_dir / "last.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and state["step"] == 4 and state["config_hash"] == cfg.hash()
    assert state["base"]["path"] is None and len(state["base"]["fingerprint"]) == 16
    for key in ("model", "optimizer", "rng", "history", "normalisation"):
        assert key in state
    assert any("lora" in k for k in state["model"]) and not any(
        k.startswith("encoder.image_encoder.trunk") and "lora" not in k for k in state["model"]
    )  # only the trainable state, never the frozen SAM2 weights
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    best = ck.load_checkpoint(run_dir / "best.pt")
    assert best["kind"] == "best" and best["epoch"] == out["best_epoch"]
    assert best["best"]["split"] == "test"  # PST900 has no val split: best-on-test

    with (run_dir / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["test_miou"]) == pytest.approx(state["history"][1]["test_miou"])
    # The LR of the last iteration of each epoch follows warm-up + poly exactly.
    for row in rows:
        step = int(row["step"]) - 1
        expected = cfg.train.lr * lr_factor(
            step, total_steps=4, warmup_steps=2, warmup_ratio=cfg.train.warmup_ratio, power=0.9
        )
        assert float(row["lr"]) == pytest.approx(expected)

    sim = np.load(run_dir / "similarity" / "epoch_1.npz")
    assert sim["visual"].shape == (len(sim["class_ids"]),) * 2
    assert list(sim["classes"]) == [state["classes"][i] for i in sim["class_ids"]]

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("sartm-ci").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "pst900/no-language"
    run = runs[0]
    assert run.info.run_id == state["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["synthetic"] == "true" and "git_commit" in run.data.tags
    assert run.data.tags["data_manifest_sha256"] and run.data.params["loss.w3"] == "0.0"
    history = client.get_metric_history(run.info.run_id, "test_miou")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "similarity"} <= artifacts

    # Same config again: resumes the finished run instead of training anew.
    again = train(cfg, results_root=results, quiet=True)
    assert again["steps"] == 4 and again["final"] == out["final"]
    # Another config refuses, naming the keys that differ.
    other_lr = cfg.train.lr * 2
    with pytest.raises(
        TrainingError, match=rf"train\.lr: {cfg.train.lr!r} -> {other_lr!r}"
    ) as info:
        train(cfg.with_overrides([f"train.lr={other_lr}"]), results_root=results, quiet=True)
    assert "--no-resume" in str(info.value)
    # What the orchestrators pass: the changed configuration supersedes the checkpoint.
    changed = cfg.with_overrides([f"train.lr={other_lr}"])
    restarted = train(changed, results_root=results, restart_changed=True, quiet=True)
    assert restarted["steps"] == 4
    assert ck.load_checkpoint(run_dir / "last.pt")["config_hash"] == changed.hash()
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(cfg, results_root=tmp_path / "other", resume=True, quiet=True)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    cfg_factory, tmp_path, monkeypatch
):
    real_build = train_module.build_dataset
    calls = {"n": 0}

    class Poisoned(torch.utils.data.Dataset):
        """Epoch 2 (items 9..) carries a NaN pixel: a real NaN through the real model and loss."""

        def __init__(self, inner):
            self.inner, self.meta, self.transform = inner, inner.meta, inner.transform

        def __getattr__(self, name):  # root, split, rows: what MLflow's dataset input reads
            return getattr(self.inner, name)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, index):
            item = self.inner[index]
            calls["n"] += 1
            if calls["n"] > len(self.inner):
                item["rgb"][0, 0, 0] = float("nan")
            return item

    def build(cfg, split, train, **kw):
        ds = real_build(cfg, split, train, **kw)
        return Poisoned(ds) if train else ds

    monkeypatch.setattr(train_module, "build_dataset", build)
    cfg = cfg_factory()
    results = tmp_path / "results"
    with pytest.raises(TrainingError) as info:
        train(cfg, results_root=results, quiet=True)
    message = str(info.value)
    assert "step 3 (epoch 2)" in message and "'ce_s0'" in message and "nan" in message
    assert "last.pt (epoch 1)" in message
    state = ck.load_checkpoint(results / "train" / "pst900" / "no-language" / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sartm-ci").experiment_id])
    assert run.info.status == "FAILED"


def test_text_cache_is_read_only_when_w3_is_positive(cfg_factory, tmp_path, data_root):
    from sartm.data.spec import spec_for
    from sartm.engine.modelio import ModelLoadError
    from sartm.text import save_text_cache

    # Also the bf16 autocast path (on the CPU here) and gradient clipping.
    cfg = cfg_factory("train.epochs=1", "train.precision=bf16", "train.grad_clip=1.0", run="full")
    assert cfg.loss.w3 > 0
    with pytest.raises(ModelLoadError, match="sartm embed synth-pst900"):
        train(cfg, results_root=tmp_path / "results", quiet=True)
    classes = list(spec_for("synth-pst900").classes)
    emb = torch.nn.functional.normalize(torch.randn(len(classes), 16), dim=1)
    cache = tmp_path / "text.pt"
    save_text_cache(
        {
            "embeddings": emb,
            "classes": classes,
            "prompts": classes,
            "model": "test",
            "pretrained": None,
            "template": None,
            "random_weights": True,
        },
        cache,
    )
    out = train(cfg, results_root=tmp_path / "results", quiet=True, text_cache=cache)
    assert out["final"]["train_l_se"] > 0  # the language term was trained
    state = ck.load_checkpoint(tmp_path / "results" / "train" / "pst900" / "full" / "last.pt")
    assert torch.equal(state["text_embeddings"], emb)
    sim = np.load(tmp_path / "results" / "train" / "pst900" / "full" / "similarity" / "epoch_1.npz")
    np.testing.assert_allclose(
        sim["text"], (emb @ emb.T)[sim["class_ids"]][:, sim["class_ids"]], atol=1e-5
    )


def test_cli_train_with_evaluate(cfg_factory, tmp_path):
    from click.testing import CliRunner

    from sartm.cli import cli
    from sartm.config import save_config

    cfg = cfg_factory("train.epochs=1", "eval.modality_robustness=false", "eval.tsne_pixels=0")
    config_file = tmp_path / "config.yaml"
    save_config(cfg, config_file)
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as cwd:
        init = runner.invoke(cli, ["tracking", "init", "--config", str(config_file)])
        assert init.exit_code == 0, init.output
        assert "experiment 'sartm-ci'" in init.output
        result = runner.invoke(
            cli, ["train", "--config", str(config_file), "--evaluate", "--quiet"]
        )
        assert result.exit_code == 0, result.output
        metrics = json.loads(open("results/ci/eval/pst900/no-language/metrics.json").read())
        assert f"test mIoU {metrics['test']['miou']:.4f}" in result.output
        assert metrics["checkpoint"]["path"] == "results/ci/train/pst900/no-language/last.pt"
        assert (
            tmp_path / cwd / "results" / "ci" / "train" / "pst900" / "no-language" / "best.pt"
        ).is_file()
        refused = runner.invoke(
            cli, ["train", "--config", str(config_file), "--set", "model.lora_rank=4"]
        )
        assert refused.exit_code != 0 and "model.lora_rank: 16 -> 4" in refused.output
