"""`sartm model summary`: parameters, shapes and the checkpoint check, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sartm.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BASE = ["model", "summary", "--params", str(ROOT / "params.yaml"), "--preset", "ci"]


@pytest.fixture(scope="module")
def tiny_sam2_checkpoint(tmp_path_factory) -> Path:
    """An official-format sam2_hiera_t checkpoint (random weights) made by sam2's builder."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    sam = build_sam2("configs/sam2/sam2_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2") / "sam2_hiera_t.pt"
    torch.save({"model": sam.state_dict()}, path)
    return path


def _run(*args: str):
    return CliRunner().invoke(cli, [*BASE, *args], catch_exceptions=False)


def test_summary_of_the_tiny_model_runs_a_forward_pass():
    result = _run("--dataset", "fmb", "--set", "loss.w3=0", "--set", "model.aux_head=segformer")
    assert result.exit_code == 0, result.output
    out = result.output
    for part in ("lora", "encoder (frozen)", "fusion", "decoder", "aux_head", "all"):
        assert f"\n  {part} " in out
    assert "forward pass on a zero input" in out
    assert "s0                    (1, 15, 64, 64)" in out  # FMB: 15 classes at the crop size
    assert "F~_n (SFM, stride 16) (1, 64, 4, 4)" in out
    assert "aux head segformer" in out


def test_summary_without_the_aux_head_has_no_s1():
    result = _run("--run", "pst900/ce-s0")
    assert result.exit_code == 0, result.output
    assert "  s1 " not in result.output and "aux head none" in result.output
    assert "loss: ce_s0 x 1 (ohem CE)" in result.output


def test_summary_loads_a_fitting_checkpoint(tiny_sam2_checkpoint):
    result = _run(
        "--dataset",
        "pst900",
        "--set",
        "model.backbone=sam2_hiera_t",
        "--sam2-checkpoint",
        str(tiny_sam2_checkpoint),
    )
    assert result.exit_code == 0, result.output
    assert f"checkpoint {tiny_sam2_checkpoint}: OK" in result.output
    assert "on the meta device" in result.output
    assert "s0                    (1, 5, 64, 64)" in result.output


def test_summary_fails_on_a_checkpoint_of_another_size(tiny_sam2_checkpoint):
    result = _run(
        "--dataset",
        "pst900",
        "--set",
        "model.backbone=sam2_hiera_s",
        "--sam2-checkpoint",
        str(tiny_sam2_checkpoint),
    )
    assert result.exit_code != 0
    assert "does not fit" in result.output and "sam2_hiera_s" in result.output


def test_summary_fails_on_a_missing_checkpoint(tmp_path):
    result = _run("--sam2-checkpoint", str(tmp_path / "nope.pt"))
    assert result.exit_code != 0
    assert "nope.pt" in result.output
