"""The resolved configuration file of each training job (results/<preset>/configs/<run_id>.yaml):
what `sartm train --config` and `sartm evaluate --config` read in both orchestrators. Snakemake's
run_config rule writes one file (`write_config`), DVC's first stage all of them (`write_configs`).
"""

from __future__ import annotations

from pathlib import Path

from sartm import config as cfgmod
from sartm.pipeline.plan import Plan


def write_configs(plan: Plan) -> dict[Path, bool]:
    """configs/<run_id>.yaml for every training job of the plan; {path: rewritten?}.

    A file is rewritten only when the job's training identity (config hash), eval settings, preset
    or run id changed, so execution-only settings never retrain a finished run: the same rule as the
    Snakefile's run_config (Plan.run_identity).
    """
    out = {}
    for cfg in plan.jobs.values():
        path = plan.config_file(cfg.run_id)
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


def write_config(plan: Plan, run_id: str, out: Path | None = None) -> tuple[cfgmod.Config, Path]:
    """The resolved configuration of one training job (the Snakefile's run_config rule)."""
    cfg = plan.job(run_id)
    path = out or plan.config_file(run_id)
    cfgmod.save_config(cfg, path)
    return cfg, path
