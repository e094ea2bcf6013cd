"""Every reader of torch files refuses real pickle payloads (nothing runs) with one clear line."""

from __future__ import annotations

import builtins
import os

import pytest
import torch
from click.testing import CliRunner

from sartm import torchfile
from sartm.cli import cli
from sartm.config import PROJECT_ROOT
from sartm.engine.modelio import load_trained
from sartm.engine.run_checkpoint import TrainingCheckpointError, load_checkpoint
from sartm.model.sam2_weights import CheckpointError, read_sam2_checkpoint
from sartm.text import TextCacheError, read_text_cache

PARAMS = PROJECT_ROOT / "params.yaml"


class _System:
    """Unpickling this runs `os.system` (spelled posix.system by pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    """Unpickling this runs `exec` (torch words this refusal differently)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


READERS = [
    (read_sam2_checkpoint, CheckpointError),
    (load_checkpoint, TrainingCheckpointError),
    (read_text_cache, TextCacheError),
    (load_trained, TrainingCheckpointError),
]


@pytest.mark.parametrize("payload, name", [(_System, "posix.system"), (_Exec, "exec")])
@pytest.mark.parametrize("reader, error", READERS)
def test_payloads_are_refused_and_never_run(tmp_path, payload, name, reader, error):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"image_encoder.w": torch.zeros(1)}, "x": payload(marker)}, path)
    with pytest.raises(error) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: holds pickled Python objects ({name})")
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--rgb", "a.png", "--thermal", "b.png", "--out", "m.png", "--checkpoint"],
        ["export", "--out", "m.pt", "--checkpoint"],
        ["model", "summary", "--params", str(PARAMS), "--preset", "ci", "--sam2-checkpoint"],
    ],
)
def test_commands_refuse_payloads_in_one_line(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"model": {}, "x": _System(marker)}, tmp_path / "evil.pt")
    result = CliRunner().invoke(cli, [*args, "evil.pt"])
    assert result.exit_code == 1 and not marker.exists()
    assert "holds pickled Python objects (posix.system" in result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output


def test_non_finite_tensors_are_named(tmp_path):
    state = {"a": torch.zeros(2), "b": torch.tensor([1.0, float("inf")]), "c": torch.arange(3)}
    assert torchfile.non_finite(state) == ["b"]
    with pytest.raises(CheckpointError, match=r"f.pt: 1 weight tensor\(s\) hold NaN .*\(b\)"):
        torchfile.refuse_non_finite(state, tmp_path / "f.pt", CheckpointError)
