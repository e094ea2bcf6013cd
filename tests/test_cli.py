"""The CLI boundary: project errors are one line (a traceback with --debug), integer settings are
integers, and the README's torchrun command parses in torchrun and in `sartm train`."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import shlex

import click
import pytest
from click.testing import CliRunner
from torch.distributed import run as torchrun

import sartm
from sartm.cli import cli
from sartm.cli.train import train
from sartm.config import PROJECT_ROOT
from sartm.errors import SartmError

PARAMS = str(PROJECT_ROOT / "params.yaml")


def _project_exceptions() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(sartm.__path__, "sartm."):
        if info.name.startswith("sartm.cli") or info.name == "sartm.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_project_error_is_a_sartm_error():
    """So the CLI prints each as one line; a new error class that forgets the base fails here."""
    errors = _project_exceptions()
    assert len(errors) >= 20
    warnings = [e for e in errors if issubclass(e, Warning)]
    assert [e.__name__ for e in errors if e not in warnings and not issubclass(e, SartmError)] == []


@pytest.mark.parametrize(
    "setting",
    ["train.epochs=2.0", "data.crop_size=1e2", "train.batch_size=4.0", "data.max_samples=true"],
)
def test_non_integer_settings_are_refused_before_anything_runs(tmp_path, monkeypatch, setting):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlflow.db"
    args = ["train", "--params", PARAMS, "--preset", "ci", "--run", "pst900/full", "--set", setting]
    result = CliRunner().invoke(cli, [*args, "--set", f"tracking.uri=sqlite:///{store}"])
    key, value = setting.split("=")
    assert result.exit_code == 1, result.output
    assert re.search(rf"^Error: .*{re.escape(key)}: .* is not of type 'integer'", result.output)
    assert "Traceback" not in result.output
    assert not store.exists() and not (tmp_path / "results").exists()  # no FAILED MLflow run


def test_debug_shows_the_traceback(monkeypatch):
    args = ["model", "summary", "--params", PARAMS, "--set", "train.epochs=2.0"]
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 1 and plain.output.count("\n") == 1
    debug = CliRunner().invoke(cli, ["--debug", *args])
    assert debug.exit_code == 1 and type(debug.exception).__name__ == "ConfigError"
    monkeypatch.setenv("SARTM_DEBUG", "1")
    assert type(CliRunner().invoke(cli, args).exception).__name__ == "ConfigError"


def test_file_system_errors_are_one_line(tmp_path):
    """A file where the output's folder should be: the path and the reason, no traceback."""
    (tmp_path / "in-the-way").write_text("a file, not a folder")
    target = tmp_path / "in-the-way" / "synth-pst900"
    args = ["data", "synth", "synth-pst900", "--out", str(target), "--params", PARAMS]
    result = CliRunner().invoke(cli, [*args, "--samples-train", "1", "--samples-test", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: ") and "in-the-way" in result.output


def test_readme_torchrun_command_parses():
    """torchrun's argparse takes `--run` for its `--run-path`; the README's form must get through
    torchrun's parser and then mean the same run to `sartm train`."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    commands = [line.split("#")[0] for line in readme.splitlines() if line.startswith("torchrun ")]
    assert commands, "README shows no torchrun command"
    for command in commands:
        args = torchrun.parse_args(shlex.split(command)[1:])
        assert args.module and args.training_script == "sartm"
        assert args.training_script_args[0] == "train"
        ctx = train.make_context("train", args.training_script_args[1:])
        assert ctx.params["run"] == "pst900/full", command


def test_each_command_is_loaded_only_when_it_runs():
    """`sartm train` imports neither the other commands nor the download code (start-up cost),
    and every name of the lazy table is the command it loads."""
    import subprocess
    import sys

    probe = (
        "import json, sys; from sartm.cli import cli; import click; "
        "cmd = cli.get_command(click.Context(cli), 'train'); "
        "print(json.dumps([cmd.name, sorted(m for m in sys.modules if m.startswith('sartm.cli.') "
        "or m in ('sartm.data.download', 'sartm.data.extract'))]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["train", ["sartm.cli.common", "sartm.cli.train"]]
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        assert cli.get_command(ctx, name).name == name
