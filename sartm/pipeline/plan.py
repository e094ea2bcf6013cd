"""The pipeline of one preset, defined once: its training jobs, the files each step reads and
writes, and the arguments each command gets. The Snakefile (workflow/rules/common.smk), the dvc.yaml
generator (sartm.pipeline.dvcgen) and `sartm pipeline ...` all read a `Plan`; nothing else
resolves the run list or spells a pipeline path. Config level only: no torch is imported.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sartm import config as cfgmod
from sartm import paths, runs
from sartm.data import builtin
from sartm.errors import SartmError

DEFAULT_RESOURCES = {"gpu": 0, "threads": 2, "mem_mb": 4000, "runtime": 60}


def _q(path: Path | str) -> str:
    return shlex.quote(Path(path).as_posix())


TEXT_KEYS = ("model", "pretrained", "template")


def wildcard_patterns() -> dict[str, str]:
    """The Snakemake wildcards of the data rules, from the registry (sartm.data.builtin): a
    built-in dataset (download, prepare), a stand-in (synth), any data source (text cache)."""
    return {
        "dataset": "|".join(builtin.names()) or "none",
        "source": "|".join(builtin.stand_in_names()) or "none",
        "cache": cfgmod.source_pattern(),
    }


class PlanError(SartmError, ValueError):
    """params.yaml cannot be run as one pipeline (the message names the setting)."""


@dataclass
class Plan:
    """Everything the orchestrators need to know about `preset`'s pipeline."""

    params: dict[str, Any]
    preset: str = ""
    data_root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.preset = self.preset or self.params["preset"]
        if self.preset not in self.params["presets"]:
            raise PlanError(
                f"params.yaml: preset {self.preset!r} is not defined; "
                f"allowed values: {', '.join(self.params['presets'])}"
            )
        roots = {Path(c.data.root) for c in [*self.base.values(), *self.jobs.values()]}
        if len(roots) != 1:
            raise PlanError("params.yaml: data.root must be the same for every run of a preset")
        (self.data_root,) = roots

    # --- jobs ---------------------------------------------------------------------------------

    @cached_property
    def jobs(self) -> dict[str, cfgmod.Config]:
        """One training job per distinct canonical configuration and seed, by run id."""
        return {c.run_id: c for c in cfgmod.pipeline_runs(self.params, self.preset)}

    @cached_property
    def aliases(self) -> list[dict[str, str]]:
        """For each seed: `dataset/run` of the run list -> the run id of the job serving it."""
        return cfgmod.seed_run_aliases(self.params, self.preset)

    @cached_property
    def base(self) -> dict[str, cfgmod.Config]:
        """Each logical dataset's settings outside any run (its data source and generator)."""
        return {
            ds: cfgmod.resolve(self.params, dataset=ds, preset=self.preset)
            for ds in cfgmod.logical_datasets(self.params)
        }

    def job(self, run_id: str) -> cfgmod.Config:
        if run_id not in self.jobs:
            raise PlanError(
                f"{run_id!r} is not a training job of preset {self.preset!r}; "
                f"jobs: {', '.join(self.jobs)}"
            )
        return self.jobs[run_id]

    @cached_property
    def tables(self) -> list[str]:
        """Tables whose runs all exist in the preset (the demo has a table of its own runs)."""
        return runs.table_names(self.params, self.preset)

    @cached_property
    def figures(self) -> list[str]:
        return runs.figure_names(self.params, self.preset)

    def item_jobs(self, name: str) -> dict[str, list[str]]:
        """Logical run -> the run ids of its jobs (one per seed), for a table or figure."""
        return runs.item_jobs(name, self.params, self.preset, self.aliases)

    @cached_property
    def summary_jobs(self) -> dict[str, list[str]]:
        names = runs.summary_runs()
        return runs.job_map(names, self.params, self.preset, self.aliases)

    def item_options(self, name: str) -> list[str]:
        """`--run LOGICAL[=RUN_ID]` options naming the jobs a table or figure reads."""
        return runs.format_run_options(self.item_jobs(name))

    @property
    def summary_options(self) -> list[str]:
        return runs.format_run_options(self.summary_jobs)

    def item_kind(self, name: str) -> str:
        return runs.item_spec(name)[1]["kind"]

    # --- paths ----------------------------------------------------------------------------------

    @property
    def results(self) -> Path:
        return paths.results_root(self.preset)

    def config_file(self, run_id: str) -> Path:
        return paths.config_file(run_id, self.results)

    def train_dir(self, run_id: str) -> Path:
        return paths.train_dir(run_id, self.results)

    def train_done(self, run_id: str) -> Path:
        return paths.train_done(run_id, self.results)

    def metrics_file(self, run_id: str) -> Path:
        return paths.metrics_file(run_id, self.results)

    def stamp_file(self, name: str) -> Path:
        return paths.stamp_file(name, self.results)

    def log_file(self, step: str, name: str) -> Path:
        return paths.log_file(step, name, self.results)

    def benchmark_file(self, step: str, run_id: str) -> Path:
        return paths.benchmark_file(step, run_id, self.results)

    def table_files(self, name: str) -> list[Path]:
        return paths.table_files(name, self.results)

    def figure_files(self, name: str) -> list[Path]:
        return paths.figure_files(name, self.results)

    @property
    def summary_file(self) -> Path:
        return paths.summary_file(self.results)

    @property
    def summary_html(self) -> Path:
        return paths.summary_html(self.results)

    @property
    def scores_file(self) -> Path:
        return paths.scores_file(self.results)

    @property
    def report_file(self) -> Path:
        return paths.report_file(self.results)

    def data_dir(self, cfg: cfgmod.Config) -> Path:
        return paths.processed_dir(cfg.data.dataset, self.data_root)

    def text_file(self, cfg: cfgmod.Config) -> Path:
        return paths.text_cache(cfg.data.dataset, self.data_root)

    @cached_property
    def pretrain(self) -> dict[str, Any]:
        """The preset's offline SAM2 stand-in settings (made only when some job loads it)."""
        return cfgmod.pretrain_settings(self.params, self.preset)

    def uses_stand_in(self, run_id: str) -> bool:
        return cfgmod.uses_stand_in(self.job(run_id), self.params)

    # --- what each step reads ---------------------------------------------------------------------

    def train_inputs(self, run_id: str) -> dict[str, str]:
        cfg = self.job(run_id)
        inputs = {"config": str(self.config_file(run_id)), "data": str(self.data_dir(cfg))}
        if cfg.loss.w3 > 0:
            inputs["text"] = str(self.text_file(cfg))
        if self.uses_stand_in(run_id):
            inputs["base"] = str(self.pretrain["out"])
        return inputs

    def item_metrics(self, mapping: dict[str, list[str]]) -> list[str]:
        return list(
            dict.fromkeys(str(self.metrics_file(r)) for ids in mapping.values() for r in ids)
        )

    def table_inputs(self, name: str) -> dict[str, list[str]]:
        mapping = self.item_jobs(name)
        inputs = {"metrics": self.item_metrics(mapping)}
        if self.item_kind(name) == "time":
            inputs["benchmarks"] = [
                str(self.benchmark_file(step, r))
                for ids in mapping.values()
                for r in ids
                for step in ("train", "evaluate")
            ]
        return inputs

    def figure_inputs(self, name: str) -> dict[str, list[str]]:
        """Metrics, plus the dataset (qualitative grids) or training side files (F8, curves)."""
        mapping = self.item_jobs(name)
        inputs = {"metrics": self.item_metrics(mapping)}
        kind = self.item_kind(name)
        if kind == "qualitative":
            inputs["data"] = sorted({str(self.data_dir(self.job(r[0]))) for r in mapping.values()})
        if kind in ("similarity", "curves"):
            inputs["trained"] = [str(self.train_done(r[0])) for r in mapping.values()]
        return inputs

    # --- what each command is told ------------------------------------------------------------------

    def run_identity(self, run_id: str) -> str:
        """What makes a run (its config file is rewritten, and the run retrained, exactly when
        this changes): canonical settings minus execution-only keys, plus the eval settings."""
        cfg = self.job(run_id)
        identity = {
            "run_id": run_id,
            "preset": cfg.preset,
            "settings": cfg.training_identity(),
            "eval": cfg.sections()["eval"],  # a finished run then only resumes
        }
        return json.dumps(identity, sort_keys=True)

    # Every command is one string, the same in a Snakemake rule and in a dvc.yaml stage.

    def train_command(self, run_id: str, gpus: int = 0) -> str:
        """`sartm train` for one job (under torchrun with more than one GPU). The job reruns
        exactly when its configuration changed, so a `last.pt` of another configuration is
        superseded (--restart-if-changed) and one of the same configuration resumes."""
        launcher = "sartm"
        if gpus > 1:
            launcher = f"torchrun --standalone --nproc_per_node={gpus} -m sartm"
        return (
            f"{launcher} train --config {_q(self.config_file(run_id))} --restart-if-changed --quiet"
        )

    def evaluate_command(self, run_id: str) -> str:
        return f"sartm evaluate --config {_q(self.config_file(run_id))} --quiet"

    def data_source(self, dataset: str) -> str:
        """The data source the preset maps a logical dataset to (synth-*, real, custom-*)."""
        return self.base[dataset].data.dataset

    def data_commands(self, dataset: str) -> list[str]:
        """What makes `dataset`'s processed folder: generate a stand-in, download and prepare
        the real data, or prepare a dataset of the user's from its raw folder. A custom-*
        source that params.yaml's `datasets:` does not declare is prepared by hand."""
        source = self.data_source(dataset)
        if source.startswith(cfgmod.SYNTHETIC_PREFIX):
            return [self.synth_command(source)]
        if source in builtin.names():
            return [self.download_command(source), self.prepare_command(source)]
        if self.own(source) is not None:
            return [self.prepare_own_command(source)]
        return []

    def own(self, source: str) -> dict[str, Any] | None:
        """The `datasets:` entry behind a custom-<name> source (None: not the user's own)."""
        name = source.removeprefix(cfgmod.CUSTOM_PREFIX)
        return cfgmod.own_dataset(self.params, name) if source != name else None

    def own_inputs(self, source: str) -> list[str]:
        """The raw folder and the class file a dataset of the user's is prepared from."""
        own = self.own(source)
        return [own["raw"], own["classes"]] if own else []

    def prepare_own_command(self, source: str) -> str:
        own, out = self.own(source), paths.processed_dir(source, self.data_root)
        name = source.removeprefix(cfgmod.CUSTOM_PREFIX)
        return (
            f"sartm data prepare custom --name {name} --raw {_q(own['raw'])} "
            f"--classes {_q(own['classes'])} --out {_q(out)} --force --no-progress"
        )

    def synth_command(self, source: str) -> str:
        out = paths.processed_dir(source, self.data_root)
        args = " ".join(self.synth_args(source))
        return f"sartm data synth {source} --out {_q(out)} --preset {self.preset} {args}"

    def download_command(self, dataset: str) -> str:
        return f"sartm data download {dataset} --root {_q(self.data_root)} --no-progress"

    def prepare_command(self, dataset: str) -> str:
        raw, out = (
            paths.raw_dir(dataset, self.data_root),
            paths.processed_dir(dataset, self.data_root),
        )
        return f"sartm data prepare {dataset} --raw {_q(raw)} --out {_q(out)} --force --no-progress"

    def text_command(self, source: str) -> str:
        cache = paths.text_cache(source, self.data_root)
        options = " ".join(shlex.quote(o) for o in self.text_options(source))
        return f"sartm embed {source} --out {_q(cache)} --preset {self.preset} {options}"

    def text_inputs(self, source: str) -> list[str]:
        """Custom datasets take their class names from their meta.json."""
        if source.startswith(cfgmod.CUSTOM_PREFIX):
            return [str(paths.processed_dir(source, self.data_root))]
        return []

    @property
    def tracking_command(self) -> str:
        return f"sartm tracking init --preset {self.preset}"

    @property
    def pretrain_command(self) -> str:
        out = _q(self.pretrain["out"])
        return f"sartm pretrain --preset {self.preset} --out {out} --force --quiet"

    @property
    def pretrain_outputs(self) -> list[str]:
        return [f"{self.pretrain['out']}{ext}" for ext in ("", ".sha256", ".json")]

    def synth_args(self, source: str) -> list[str]:
        """Explicit generator settings of the preset, so a changed setting regenerates the data."""
        synth = self.base[source.removeprefix(cfgmod.SYNTHETIC_PREFIX)].synth
        args = [f"--samples-{split}={n}" for split, n in sorted(synth.samples.items())]
        return [*args, f"--width={synth.width}", f"--seed={synth.seed}"]

    def text_jobs(self, source: str) -> list[cfgmod.Config]:
        """The jobs reading `source`'s text cache (loss.w3 > 0)."""
        return [c for c in self.jobs.values() if c.data.dataset == source and c.loss.w3 > 0]

    def text_settings(self, source: str) -> dict[str, Any]:
        """text.model / pretrained / template of the cache of one data source: one file per
        source, so every run distilling language from it must agree."""
        seen = {tuple(getattr(c.text, k) for k in TEXT_KEYS) for c in self.text_jobs(source)}
        if len(seen) != 1:
            raise PlanError(
                f"params.yaml: the runs on {source} with loss.w3 > 0 use {len(seen)} different "
                "text settings; the text cache is one file per dataset"
            )
        return dict(zip(TEXT_KEYS, seen.pop(), strict=True))

    def text_options(self, source: str) -> list[str]:
        return [f"--set=text.{k}={json.dumps(v)}" for k, v in self.text_settings(source).items()]

    @cached_property
    def preset_chain(self) -> list[str]:
        """The preset and those it `extends`, base first."""
        chain, name = [], self.preset
        while name:
            chain.insert(0, name)
            name = self.params["presets"][name].get("extends")
        return chain

    def resources(self, step: str) -> dict[str, Any]:
        """The preset's `resources.<step>` (following `extends`), over DEFAULT_RESOURCES."""
        out = dict(DEFAULT_RESOURCES)
        for name in self.preset_chain:
            out.update(self.params["presets"][name].get("resources", {}).get(step, {}))
        return out
