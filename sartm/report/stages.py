"""The set-up stages of dvc.yaml: resolved run configs, data and text caches per logical dataset.

DVC runs a fixed stage graph whatever the preset (`dvc exp run -S preset=paper` switches it), so
its stages name logical datasets (mfnet, pst900, fmb) and record what they produced in small
stamp files under results/pipeline/; the preset decides at run time whether a dataset is
generated (synthetic stand-in) or downloaded and prepared. Snakemake does the same work with its
own rules (workflow/rules/data.smk, text.smk, train.smk). Each step is done by the ordinary
`sartm` commands.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sartm import config as cfgmod
from sartm import paths
from sartm.report.results import config_file, stamp_file
from sartm.report.runs import ReportError

SARTM = [sys.executable, "-m", "sartm"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str]) -> None:
    """Run a sartm command; its failure is this stage's failure (its output is already shown)."""
    result = subprocess.run([str(c) for c in command], check=False)
    if result.returncode != 0:
        raise ReportError(f"`{' '.join(map(str, command[2:]))}` failed ({result.returncode})")


def _write_stamp(path: Path, record: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def write_configs(
    params: dict[str, Any], preset: str | None = None, root: Path = paths.RESULTS
) -> dict[Path, bool]:
    """results/configs/<run_id>.yaml for every training job; {path: rewritten?}.

    A file is rewritten only when the job's training identity (config hash), eval settings, preset
    or run id changed, so execution-only settings never retrain a finished run: the same rule as the
    Snakefile's run_config.
    """
    out = {}
    for cfg in cfgmod.pipeline_runs(params, preset):
        path = config_file(cfg.run_id, root)
        old = None
        if path.is_file():
            try:
                old = cfgmod.load_config(path)
            except cfgmod.ConfigError:
                old = None
        # eval settings are not part of the hash (they never retrain), but evaluation reads them
        # from this file: a changed eval section rewrites it, and a finished run just resumes.
        same = old is not None and (old.hash(), old.preset, old.run_id, old.eval) == (
            cfg.hash(),
            cfg.preset,
            cfg.run_id,
            cfg.eval,
        )
        if not same:
            cfgmod.save_config(cfg, path)
        out[path] = not same
    return out


def write_config(
    run_id: str, params: dict[str, Any], preset: str | None = None, out: Path | None = None
) -> tuple[cfgmod.Config, Path]:
    """The resolved configuration of one training job (the Snakefile's run_config rule)."""
    jobs = {c.run_id: c for c in cfgmod.pipeline_runs(params, preset)}
    if run_id not in jobs:
        raise ReportError(
            f"{run_id!r} is not a training job of the run list; jobs: {', '.join(jobs)}"
        )
    path = out or config_file(run_id)
    cfgmod.save_config(jobs[run_id], path)
    return jobs[run_id], path


def checkpoint_hash(path: Path) -> str | None:
    """The config hash a training checkpoint was made with (None: unreadable, or no hash)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a truncated or foreign file: let `sartm train` report it
        return None
    value = state.get("config_hash") if isinstance(state, dict) else None
    return str(value) if value is not None else None


def train_command(config: Path, gpus: int = 0, results: Path = paths.RESULTS) -> list[str]:
    """`sartm train` for one job of the pipeline (under torchrun with more than one GPU).

    The pipeline reruns a job exactly when its configuration changed, so a `last.pt` made with
    another configuration is superseded: start over (--no-resume). One of the same configuration
    is an interrupted run: `sartm train` resumes it.
    """
    cfg = cfgmod.load_config(config)
    launcher = [sys.executable, "-m"]
    if gpus > 1:
        launcher += ["torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m"]
    command = [*launcher, "sartm", "train", "--config", str(config), "--quiet"]
    last = paths.train_dir(cfg.run_id, results) / "last.pt"
    if last.is_file() and checkpoint_hash(last) not in (None, cfg.hash()):
        command.append("--no-resume")
    return command


def synth_args(cfg: cfgmod.Config) -> list[str]:
    """The preset's generator settings, explicitly (as the Snakefile's synth rule passes them)."""
    args = [f"--samples-{split}={n}" for split, n in sorted(cfg.synth.samples.items())]
    return [*args, f"--width={cfg.synth.width}", f"--seed={cfg.synth.seed}"]


def prepare_data(
    dataset: str, params: dict[str, Any], preset: str | None = None, root: Path = paths.RESULTS
) -> Path:
    """Generate, or download and prepare, the data source the preset maps `dataset` to."""
    cfg = cfgmod.resolve(params, dataset=dataset, preset=preset)
    source, data_root = cfg.data.dataset, Path(cfg.data.root)
    out = paths.processed_dir(source, data_root)
    if source.startswith(cfgmod.SYNTHETIC_PREFIX):
        args = [source, "--out", out, "--preset", cfg.preset, *synth_args(cfg)]
        _run([*SARTM, "data", "synth", *args])
    elif source in cfgmod.LOGICAL_DATASETS:
        _run([*SARTM, "data", "download", source, "--root", data_root, "--no-progress"])
        _run([*SARTM, "data", "prepare", source, "--root", data_root, "--no-progress"])
    elif not (out / "meta.json").is_file():
        raise ReportError(
            f"{out}: missing; prepare the custom dataset first "
            f"(sartm data prepare custom --name ... --raw DIR --classes FILE)"
        )
    record = {
        "dataset": dataset,
        "source": source,
        "preset": cfg.preset,
        "path": out.as_posix(),
        "meta_sha256": _sha256(out / "meta.json"),
        "manifest_sha256": _sha256(out / "manifest.csv"),
    }
    return _write_stamp(stamp_file(f"data-{dataset}.json", root), record)


def text_jobs(
    params: dict[str, Any], dataset: str, preset: str | None = None
) -> list[cfgmod.Config]:
    """The training jobs of `dataset` that read the text cache (loss.w3 > 0)."""
    return [
        c for c in cfgmod.pipeline_runs(params, preset) if c.dataset == dataset and c.loss.w3 > 0
    ]


def embed_text(
    dataset: str, params: dict[str, Any], preset: str | None = None, root: Path = paths.RESULTS
) -> Path:
    """The CLIP text cache of `dataset`'s data source (when a job distils language)."""
    jobs = text_jobs(params, dataset, preset)
    record: dict[str, Any] = {"dataset": dataset, "needed": bool(jobs)}
    if jobs:
        settings = {(c.text.model, c.text.pretrained, c.text.template) for c in jobs}
        if len(settings) != 1:
            raise ReportError(
                f"params.yaml: the runs on {dataset} with loss.w3 > 0 use different text "
                "settings; the text cache is one file per dataset"
            )
        cfg = jobs[0]
        cache = paths.text_cache(cfg.data.dataset, Path(cfg.data.root))
        sets = [
            f"--set=text.{key}={json.dumps(getattr(cfg.text, key))}"
            for key in ("model", "pretrained", "template")
        ]
        _run([*SARTM, "embed", cfg.data.dataset, "--out", cache, "--preset", cfg.preset, *sets])
        record.update(
            source=cfg.data.dataset,
            path=cache.as_posix(),
            text=dict(zip(("model", "pretrained", "template"), settings.pop(), strict=True)),
            sha256=_sha256(cache),
        )
    return _write_stamp(stamp_file(f"text-{dataset}.json", root), record)
