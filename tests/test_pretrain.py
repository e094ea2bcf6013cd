"""The offline SAM2 stand-in: official layout, the official loader, no shared images, the CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sartm import config as cfgmod
from sartm.cli import cli
from sartm.data.synth import PRETRAIN_SPLIT, render
from sartm.engine import modelio
from sartm.model.sam2_weights import detect_backbone, read_sam2_checkpoint
from sartm.pretrain import (
    PretrainError,
    PretrainSettings,
    is_stand_in,
    pretrain_stand_in,
    union_classes,
)

TINY = PretrainSettings(
    backbone="test_hiera_tiny", samples_per_source=2, width=64, steps=2, batch_size=2,
    crop_size=64, threads=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "stand-in.pt"
    summary = pretrain_stand_in(TINY, out, quiet=True)
    return out, summary


def test_the_stand_in_is_an_official_layout_sam2_checkpoint(stand_in):
    path, summary = stand_in
    state = read_sam2_checkpoint(path)  # the loader of Meta's files
    heads = {k.split(".", 1)[0] for k in state}
    assert heads == {"image_encoder", "sam_mask_decoder", "sam_prompt_encoder"}
    assert any(k.endswith(".attn.qkv.weight") for k in state)  # fused qkv, as Meta's
    assert detect_backbone(state, source=str(path)) == "test_hiera_tiny"
    assert "sam_prompt_encoder.not_a_point_embed.weight" in state
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["sha256"] == sha
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == sha
    meta = torch.load(path, weights_only=True)["sartm_stand_in"]
    assert meta["synthetic"] and "SYNTHETIC" in meta["description"]
    assert meta["classes"] == union_classes(TINY.sources)
    assert is_stand_in(path) and not is_stand_in(None)


def test_demo_runs_load_it_through_the_official_path_and_report(stand_in, capsys):
    path, _ = stand_in
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    cfg = cfgmod.resolve(
        params, dataset="pst900", run="no-language", preset="demo",
        overrides=[f"model.checkpoint={path}"],
    )  # fmt: skip
    model, base = modelio.build(cfg, num_classes=5, text_embeddings=None, quiet=False)
    report = capsys.readouterr().out
    assert f"checkpoint {path}: OK" in report
    assert "mask tokens: 25 in the checkpoint, 5 class tokens here" in report
    state = read_sam2_checkpoint(path)
    encoder = model.encoder.base_state_dict()
    for key in ("trunk.blocks.0.attn.qkv.weight", "neck.convs.0.conv.weight"):
        torch.testing.assert_close(encoder[key], state[f"image_encoder.{key}"])
    torch.testing.assert_close(
        model.decoder.transformer.layers[0].self_attn.q_proj.weight,
        state["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight"],
    )
    assert base.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_demo_and_ci_presets_point_at_their_stand_in_and_paper_does_not():
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    for preset in ("demo", "ci"):
        out = cfgmod.pretrain_settings(params, preset)["out"]
        jobs = cfgmod.pipeline_runs(params, preset)
        loads = [c.run_id for c in jobs if cfgmod.uses_stand_in(c, params)]
        assert len(loads) == len(jobs) - 1, preset  # all but the random-encoder run
        assert all(c.model.checkpoint in (out, None) for c in jobs)
    assert not any(cfgmod.uses_stand_in(c, params) for c in cfgmod.pipeline_runs(params, "paper"))


def test_pretraining_scenes_share_no_image_with_any_split():
    def digest(s):
        return hashlib.sha256(s.rgb.tobytes() + s.label.tobytes()).hexdigest()

    for source, splits in (
        ("synth-mfnet", ("train", "val", "test")),
        ("synth-pst900", ("train", "test")),
        ("synth-fmb", ("train", "test")),
    ):
        pre = {digest(render(source, PRETRAIN_SPLIT, i, width=48, seed=0)) for i in range(12)}
        seen = {
            digest(render(source, split, i, width=48, seed=0))
            for split in splits
            for i in range(12)
        }
        assert len(pre) == 12 and not pre & seen
        scene = render(source, PRETRAIN_SPLIT, 0, width=48, seed=0)
        assert scene.condition == "day" and scene.rgb.dtype == np.uint8


def test_bad_settings_name_the_setting():
    with pytest.raises(PretrainError, match="pretrain.sources"):
        PretrainSettings(sources=("mfnet",))
    with pytest.raises(PretrainError, match="pretrain.steps"):
        PretrainSettings(steps=0)


def test_cli_writes_the_stand_in_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "w" / "s.pt"
    params = str(cfgmod.PROJECT_ROOT / "params.yaml")
    args = ["pretrain", "--params", params, "--preset", "ci", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC SAM2 stand-in" in result.output and out.is_file()
    before = out.read_bytes()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "--force" in again.output
    assert out.read_bytes() == before
