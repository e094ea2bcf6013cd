"""Every command the README shows, as written: a README line that fails turns the suite red.

Commands too long to run here are checked the way their tool checks them without running: a
Snakemake dry run (`-n`), `sartm` and torchrun argument parsing, the install lines against the
Makefile's (which CI runs). A few are run by other tests, named in COVERED_ELSEWHERE.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest
from pipeline_helpers import REPO, copy_workflow, snakemake

from sartm.cli import cli

COVERED_ELSEWHERE = {
    "make demo": "CI's .ci/run and the measured demo (README)",
    "make test": "CI's .ci/run",
    "snakemake --report results/demo/report.zip": "tests/pipeline/test_report.py",
    "dvc repro": "tests/pipeline/test_e2e.py (dvc repro of the ci grid)",
    "dvc exp show": "tests/pipeline/test_e2e.py",
    "dvc plots show": "tests/pipeline/test_e2e.py",
    "sartm pipeline plots": "tests/pipeline/test_e2e.py (dvc repro, then the plots page)",
    "torchrun --nproc_per_node 4 -m sartm train -r pst900/full --preset paper": (
        "tests/test_cli.py::test_readme_torchrun_command_parses"
    ),
}


def readme_commands() -> list[str]:
    """Each command of the README's bash blocks, comments stripped, `;` and `&&` split."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # join `\` continuations
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands += [c.strip() for c in re.split(r";|&&", line) if c.strip()]
    return commands


COMMANDS = readme_commands()


def _of(tool: str) -> list[str]:
    return [c for c in COMMANDS if c.split()[0] == tool and c not in COVERED_ELSEWHERE]


def test_every_command_is_checked_here_or_elsewhere():
    checked = {"sartm", "snakemake", "pip", "python3.11", "SAM2_BUILD_CUDA=0", "python", "."}
    unchecked = [c for c in COMMANDS if c not in COVERED_ELSEWHERE and c.split()[0] not in checked]
    assert unchecked == []
    assert len(COMMANDS) > 30


def _parse_sartm(argv: list[str]) -> click.Context:
    """Resolve the subcommand and parse its options and arguments as `sartm` would."""
    command: click.Command = cli
    ctx = cli.make_context("sartm", [], resilient_parsing=True)
    while isinstance(command, click.Group):
        assert argv and not argv[0].startswith("-"), f"no subcommand in {argv}"
        name, argv = argv[0], argv[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`{name}` is not a command of `{command.name}`"
        command = sub
    return command.make_context(command.name, argv)


@pytest.mark.parametrize("command", _of("sartm"))
def test_sartm_commands_parse(command, tmp_path, monkeypatch):
    """Files the command reads (an archive you fetched) are made empty first, as a user has them."""
    monkeypatch.chdir(tmp_path)
    for _ in range(5):
        try:
            _parse_sartm(shlex.split(command)[1:])
            return
        except click.BadParameter as exc:
            missing = re.search(r"(?:Path|File) '([^']+)' does not exist", str(exc))
            if not missing:
                raise
            (tmp_path / missing.group(1)).touch()
    raise AssertionError(f"{command}: still fails after making its input files")


def test_benchmark_command_parses():
    (command,) = [c for c in COMMANDS if c.startswith("python -m benchmarks.run")]
    done = subprocess.run(
        [sys.executable, *shlex.split(command)[1:], "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for option in re.findall(r"(--[\w-]+)", command):
        assert option in done.stdout, option


def test_install_lines_match_the_makefile():
    """The by-hand install is what `make setup` (run by CI) does, flag for flag."""
    makefile = (REPO / "Makefile").read_text().replace("$(PIP)", "pip")
    for command in _of("pip") + _of("SAM2_BUILD_CUDA=0"):
        words = command.replace("pip install", "pip install -q", 1)
        assert words in makefile, command


@pytest.mark.parametrize("command", _of("snakemake"))
def test_snakemake_commands_dry_run(command, tmp_path):
    """As written plus `-n`; the paper preset's lines plan the paper's 30 training jobs."""
    workdir = copy_workflow(tmp_path)
    done = snakemake(workdir, *shlex.split(command)[1:], "-n", "--quiet", "rules", timeout=600)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.M))
    assert int(counts.get("total", 0)) > 0, done.stdout[-2000:]
    if "preset=paper" in command:
        assert counts["train"] == "30", done.stdout[-2000:]
