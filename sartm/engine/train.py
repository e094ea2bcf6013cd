"""The training loop: one plain function, `train(cfg) -> metrics`.

The code reads in the order it runs: `_train` lists the steps (the run folder and the state to
resume, data/model/optimiser, the start state, the MLflow run, the epochs, the final files), each
epoch is `_run_epoch` (train, validate, commit), and `Run` is what the steps share.

Per iteration: poly LR with linear warm-up, forward under bf16 autocast on GPUs (fp32 on CPUs),
the model's own losses, optional gradient clipping, AdamW. Per epoch: validation (every
`val_every` epochs), the F8 similarity matrices at `similarity_epochs`, an atomic `last.pt` (and
`best.pt` when the selection metric improved), a row of `history.csv`, one MLflow `log_batch`.

One commit per epoch: the rename of `last.pt` (which holds the whole history) is the commit;
`best.pt`, `history.csv` and the MLflow metrics are written after it, from it alone, and a resume
rewrites whichever of them a kill cut short (MLflow: only the steps it lacks). So after a kill at
any instant, a rerun ends with all four consistent, also when the kill came in the last epoch.

Model selection (docs/method.md section 5): with a validation split (MFNet) `best.pt` is selected on
val; without one (PST900, FMB) the epoch evaluation runs on test, so `best.pt` is the authors'
best-on-test protocol and `last.pt` stays the primary result.

Resuming: `last.pt` holds everything needed to continue exactly (trainable model state and
buffers, optimiser, step, best metric, history, and each rank's python/numpy/torch/CUDA RNG
states, which the model's own randomness, e.g. LoRA dropout, draws from). The data order and
the augmentation carry no state: the order is DistributedSampler's permutation of (train.seed,
epoch), and each sample is augmented from a seed derived from (train.seed, epoch, sample index)
(`sartm.data.sampling`), whatever the number of data workers, their persistence across epochs,
the process count or the point of interruption. `last.pt` is picked up automatically when its
configuration matches (evaluation settings aside); a different configuration refuses to resume
and names the keys that differ.

Multi-GPU: under `torchrun --nproc_per_node N` the model is wrapped in DistributedDataParallel
(NCCL on GPUs, gloo on CPUs). `train.batch_size` is the GLOBAL batch (each rank takes
batch_size / N), and every process uses the same DistributedSampler permutation, so one step sees
the same samples, identically augmented, as a single-process step. Differences that remain, by
design: BatchNorm statistics, OHEM pixel selection and the class prototypes (L_cr, L_se) are
computed per rank on the rank's share of the batch; DDP broadcasts rank 0's buffers (BatchNorm
running stats, EMA prototypes) at each forward. Only rank 0 writes files and MLflow.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from sartm import paths, tracking
from sartm.config import Config, save_config
from sartm.data.dataset import RGBTDataset, build_dataset
from sartm.data.sampling import SeededSampler
from sartm.engine import modelio, runtime
from sartm.engine.evaluate import evaluate, score_loader
from sartm.engine.optim import build_optimizer, lr_factor, set_lr
from sartm.engine.provenance import git_state, manifest_hash
from sartm.engine.run_checkpoint import (
    TRAIN_FORMAT,
    TrainingCheckpointError,
    atomic_save,
    config_differences,
    learning_identity,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    seed_everything,
    set_rng_state,
)
from sartm.errors import SartmError
from sartm.losses import NonFiniteLossError
from sartm.pretrain import is_stand_in

CHECKPOINT_KEYS = (  # what a last.pt must hold to be resumed from
    "format",
    "epoch",
    "step",
    "model",
    "optimizer",
    "rng",
    "config",
    "training_identity",
)
PROGRESS_EVERY = 10  # iterations between progress-bar loss updates (each one is a host sync)


class TrainingError(SartmError, RuntimeError):
    """The run cannot start or continue; the message says why and what was kept."""


@dataclass
class Progress:
    """What the loop carries from epoch to epoch (and across a resume)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed iterations
    best_metric: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    mlflow_run_id: str | None = None


@dataclass
class Loaders:
    """The training and selection-split loaders of one process, and what resuming needs."""

    train_set: RGBTDataset
    eval_set: RGBTDataset
    train: DataLoader
    eval: DataLoader
    sampler: SeededSampler
    select_split: str  # "val" where the dataset has one, else "test" (authors' protocol)


@dataclass
class Run:
    """What the steps of one training process share: the settings, where it runs, and what
    `_build` made once (data, model, optimiser); the MLflow run and the progress come later."""

    cfg: Config
    info: runtime.Dist
    device: torch.device
    out_dir: Path
    quiet: bool
    loaders: Loaders
    classes: list[str]
    text: torch.Tensor | None  # the text teacher's class embeddings (None when loss.w3 = 0)
    raw_model: nn.Module  # the SARTM: state dicts, losses and evaluation use it unwrapped
    model: nn.Module  # what runs the forward: raw_model, maybe DDP-wrapped and/or compiled
    base: modelio.BaseWeights
    optimizer: torch.optim.Optimizer
    params: dict[str, int]
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    tracker: Any = field(default_factory=tracking.NullTracker)
    progress: Progress = field(default_factory=Progress)

    @property
    def last_path(self) -> Path:
        return self.out_dir / paths.LAST

    def log(self, message: str) -> None:
        """One line above the progress bars, from rank 0 only."""
        if self.info.is_main:
            tqdm.write(message)


def train(
    cfg: Config,
    *,
    resume: bool | None = None,
    restart_changed: bool = False,
    evaluate_after: bool = False,
    quiet: bool = False,
    results_root: Path | None = None,
    text_cache: Path | None = None,
) -> dict[str, Any]:
    """Train the run `cfg.run_id`; returns the final training metrics (train_metrics.json).

    resume: None continues from `last.pt` when it exists with the same configuration; True
    requires it; False starts over. restart_changed: start over (instead of refusing) when
    `last.pt` holds another configuration. results_root: default the preset's folder
    (`paths.results_root`). evaluate_after: evaluate the final checkpoint(s) in this
    process afterwards (their metrics are returned under "evaluation"). text_cache: the text
    teacher's file (default `paths.text_cache(dataset)`; read only when loss.w3 > 0).
    """
    info, device = runtime.init_distributed(cfg.train.device)
    runtime.configure_backends(device, tf32=cfg.train.tf32)
    results_root = results_root or paths.results_root(cfg.preset)
    try:
        result = _train(cfg, info, device, resume, restart_changed, quiet, results_root, text_cache)
    finally:
        runtime.shutdown_distributed()
    if evaluate_after and info.is_main:
        result["evaluation"] = evaluate(cfg, results_root=results_root, quiet=quiet)
    return result


def _train(
    cfg, info, device, resume, restart_changed, quiet, results_root, text_cache
) -> dict[str, Any]:
    """The steps in order: run folder and resume state, data/model/optimiser, the state to start
    from, the MLflow run, the epochs (a failure marks the MLflow run FAILED), the final files."""
    out_dir = paths.train_dir(cfg.run_id, results_root)
    state = _prepare_folder(cfg, info, out_dir, resume, restart_changed)
    run = _build(cfg, info, device, out_dir, quiet, text_cache)
    _start_from(run, state)
    _wrap_model(run)
    _start_tracking(run, state)
    _log_plan(run)
    try:
        for epoch in range(run.progress.epoch, cfg.train.epochs):
            _run_epoch(run, epoch)
    except BaseException:
        with contextlib.suppress(Exception):
            run.tracker.end("FAILED")
        raise
    return _finish(run)


def _prepare_folder(
    cfg: Config, info: runtime.Dist, out_dir: Path, resume: bool | None, restart_changed: bool
) -> dict[str, Any] | None:
    """The `last.pt` to resume from (read before anything in the folder changes), then the
    folder itself: created, cleared of a killed write's temp files, this run's config.yaml."""
    state = _resume_state(cfg, out_dir / paths.LAST, resume, restart_changed)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out_dir)
        save_config(cfg, out_dir / "config.yaml")
    return state


def _resume_state(
    cfg: Config, last: Path, resume: bool | None, restart_changed: bool = False
) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh start (see the module docstring).

    restart_changed: a checkpoint of another configuration is superseded (the orchestrators'
    rule: a job reruns exactly when its configuration changed) instead of refused."""
    if resume is False or not last.is_file():
        if resume is True:
            raise TrainingError(f"{last}: nothing to resume (no checkpoint)")
        return None
    state = load_checkpoint(last, required=CHECKPOINT_KEYS)
    old = learning_identity(state["training_identity"])
    new = learning_identity(cfg.training_identity())
    if old != new and restart_changed:
        tqdm.write(f"{last}: made with another configuration; starting the run over")
        return None
    if old != new:
        raise TrainingError(
            f"{last}: was trained with another configuration (hash {state['config_hash']} != "
            f"{cfg.hash()}); differing keys:\n  "
            + "\n  ".join(config_differences(old, new))
            + "\nStart over with --no-resume, or choose another run name."
        )
    return state


def _build(
    cfg: Config,
    info: runtime.Dist,
    device: torch.device,
    out_dir: Path,
    quiet: bool,
    text_cache: Path | None,
) -> Run:
    """Data, model (with its frozen base weights) and optimiser, the same on every rank; the
    classes come from the training split, so the model is built after the loaders."""
    loaders = _build_loaders(cfg, info, device)
    classes = list(loaders.train_set.meta["classes"])
    text = modelio.text_embeddings_for(cfg, classes, text_cache)
    model, base = modelio.build(cfg, len(classes), text, quiet=quiet or not info.is_main)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        model,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        fused=device.type == "cuda" and cfg.train.fused_adamw,
    )
    return Run(
        cfg=cfg,
        info=info,
        device=device,
        out_dir=out_dir,
        quiet=quiet,
        loaders=loaders,
        classes=classes,
        text=text,
        raw_model=model,
        model=model,
        base=base,
        optimizer=optimizer,
        params=modelio.count_parameters(model),
        dtype=runtime.amp_dtype(cfg.train.precision, device),
    )


def _build_loaders(cfg: Config, info: runtime.Dist, device: torch.device) -> Loaders:
    """One DistributedSampler permutation for every process (also a single one), so a global
    batch holds the same samples whatever the number of processes, each augmented from its own
    seed (SeededSampler), so workers can persist across epochs."""
    train_set = build_dataset(cfg, "train", train=True)
    select_split = "val" if train_set.meta.get("splits", {}).get("val") else "test"
    eval_set = build_dataset(cfg, select_split, train=False)
    if cfg.train.batch_size % info.world_size:
        raise TrainingError(
            f"train.batch_size {cfg.train.batch_size} is the global batch and must be "
            f"divisible by the number of processes ({info.world_size})"
        )
    if len(train_set) < cfg.train.batch_size:
        raise TrainingError(
            f"the training split has {len(train_set)} samples, fewer than one batch "
            f"({cfg.train.batch_size}); lower train.batch_size"
        )
    per_rank = cfg.train.batch_size // info.world_size
    sampler = SeededSampler(
        DistributedSampler(
            train_set,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=cfg.train.seed,
            drop_last=True,
        )
    )
    # Each loader gets a generator of its own: starting an iterator draws a worker base seed
    # from it, which must not move the global RNG (checkpointed for the model's randomness).
    # Its state is irrelevant: the workers' torch seeds derive from it, but nothing draws on them.
    common = {
        "num_workers": cfg.data.num_workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": cfg.data.num_workers > 0,
    }
    train_loader = DataLoader(
        train_set,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator(),
        **common,
    )
    # Each rank scores its own stride of the evaluation split (the confusion matrices add up).
    eval_loader = DataLoader(
        Subset(eval_set, range(info.rank, len(eval_set), info.world_size)),
        batch_size=per_rank,
        shuffle=False,
        generator=torch.Generator(),
        **common,
    )
    return Loaders(train_set, eval_set, train_loader, eval_loader, sampler, select_split)


def _start_from(run: Run, state: dict[str, Any] | None) -> None:
    """The progress and RNG states to continue from: the checkpoint's, or a fresh start seeded
    per rank (the model's own randomness, e.g. LoRA dropout, differs per rank)."""
    if state is not None:
        run.progress = _restore(state, run)
        run.log(f"resuming {run.cfg.run_id} from {run.last_path} after epoch {run.progress.epoch}")
    else:
        run.progress = Progress()
        seed_everything(run.cfg.train.seed + run.info.rank)


def _restore(state: dict[str, Any], run: Run) -> Progress:
    """Load a `last.pt` into the fresh model, optimiser and RNG states."""
    info = run.info
    if state["base"]["fingerprint"] != run.base.fingerprint:
        raise TrainingError(
            "the frozen SAM2 weights differ from the ones the run started with; cannot resume"
        )
    run.raw_model.load_trainable_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    progress = Progress(
        epoch=state["epoch"],
        step=state["step"],
        best_metric=state["best"]["metric"],
        best_epoch=state["best"]["epoch"],
        history=list(state["history"]),
        train_time_s=state["train_time_s"],
        mlflow_run_id=state.get("mlflow_run_id"),
    )
    if state["world_size"] == info.world_size:
        set_rng_state(state["rng"][info.rank])
    else:  # the per-rank random streams cannot be mapped: continue, but not exactly
        seed_everything(run.cfg.train.seed + 1000 * progress.epoch + info.rank)
        run.log(
            f"warning: the checkpoint was written by {state['world_size']} process(es), this "
            f"run has {info.world_size}: data order and augmentation do not depend on it, but "
            "the model's per-rank RNG (e.g. LoRA dropout) is re-seeded, and BatchNorm "
            "statistics, OHEM and the class prototypes follow the new per-rank share of the "
            "batch, so the resumed run is not bit-identical to an uninterrupted one"
        )
    return progress


def _wrap_model(run: Run) -> None:
    """DistributedDataParallel under torchrun, then torch.compile where `train.compile` says
    so; `run.raw_model` stays the unwrapped SARTM."""
    if run.info.enabled:
        run.model = DistributedDataParallel(
            run.model,
            device_ids=[run.device.index] if run.device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    if runtime.compile_enabled(run.cfg.train.compile, run.device):
        run.model = torch.compile(run.model)


def _start_tracking(run: Run, state: dict[str, Any] | None) -> None:
    """Rank 0 opens the run's MLflow run (the checkpoint's own on a resume) and, on a resume,
    finishes the publication of the last commit, which a kill may have cut short."""
    cfg, info, loaders = run.cfg, run.info, run.loaders
    if not info.is_main:
        return
    data_root = paths.processed_dir(cfg.data.dataset, Path(cfg.data.root))
    run.tracker = tracking.start_run(
        cfg,
        stage="train",
        resume_run_id=run.progress.mlflow_run_id,
        tags={
            **{k: str(v) for k, v in git_state().items()},
            "data_manifest_sha256": manifest_hash(data_root),
            "checkpoint": str(run.last_path),
            "base_checkpoint": run.base.path or "none (random weights)",
            "base_checkpoint_sha256": run.base.sha256 or "none",
            "base_checkpoint_synthetic": str(is_stand_in(run.base.path)).lower(),
            "selection_split": loaders.select_split,
            "world_size": info.world_size,
        },
        note=tracking.run_note(cfg, f"training job, outputs in `{run.out_dir}`"),
    )
    run.progress.mlflow_run_id = run.tracker.run_id
    if run.device.type == "cuda":  # GPU runs only: on CPUs it would only measure the tests
        run.tracker.start_system_metrics(resume=state is not None)
    run.tracker.log_dataset(loaders.train_set, "training")
    run.tracker.log_dataset(loaders.eval_set, f"model selection ({loaders.select_split})")
    run.tracker.log_artifact(run.out_dir / "config.yaml")
    if state is not None:
        _publish(state, run.out_dir, run.tracker, resumed=True)


def _log_plan(run: Run) -> None:
    """One line saying what is about to run: data, iterations, parameters, device, precision."""
    cfg, loaders, params = run.cfg, run.loaders, run.params
    run.log(
        f"{cfg.run_id}: {len(loaders.train_set)} train / {len(loaders.eval_set)} "
        f"{loaders.select_split} samples, {len(loaders.train)} iterations x {cfg.train.epochs} "
        f"epochs, {params['trainable']:,} trainable of {params['total']:,} parameters, "
        f"{run.device}, {'bf16' if run.dtype else 'fp32'}, {run.info.world_size} process(es)"
    )


def _run_epoch(run: Run, epoch: int) -> None:
    """One epoch from start to commit: train, validate when due, commit; then every rank waits
    for rank 0's commit, so no rank starts the next epoch before it is on disk."""
    started = time.perf_counter()
    row = _train_epoch(run, epoch, started)
    if _validation_due(run):
        row.update(_validate(run))
    row["epoch_time_s"] = time.perf_counter() - started
    run.progress.history.append(row)
    _commit_epoch(run, row)
    runtime.barrier()


def _train_epoch(run: Run, epoch: int, started: float) -> dict[str, Any]:
    """Every batch of the epoch's permutation, one optimisation step each; returns the epoch's
    history row so far (step, last LR, mean loss terms over the ranks, throughput)."""
    cfg, info, progress = run.cfg, run.info, run.progress
    iters = len(run.loaders.train)
    run.loaders.sampler.set_epoch(epoch)
    run.model.train()
    sums: dict[str, torch.Tensor] = {}
    images = 0
    bar = tqdm(
        run.loaders.train,
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=run.quiet or not info.is_main,
        leave=False,
        dynamic_ncols=True,
    )
    for i, batch in enumerate(bar):
        terms, lr, batch_size = _train_batch(run, batch, epoch)
        images += batch_size * info.world_size
        for name, value in terms.items():  # summed on the device: no host sync
            sums[name] = sums[name] + value if name in sums else value.double()
        if i % PROGRESS_EVERY and i + 1 < iters:
            continue
        bar.set_postfix(
            loss=f"{float(sums['loss']) / (i + 1):.4f}",
            lr=f"{lr:.2e}",
            img_s=f"{images / (time.perf_counter() - started):.1f}",
        )
    bar.close()
    progress.epoch = epoch + 1
    seconds = time.perf_counter() - started
    progress.train_time_s += seconds
    row: dict[str, Any] = {"epoch": progress.epoch, "step": progress.step, "lr": lr}
    row.update({f"train_{k}": v for k, v in _mean_over_ranks(sums, iters, info).items()})
    row["images_per_s"] = images / max(seconds, 1e-9)
    return row


def _train_batch(
    run: Run, batch: dict[str, Any], epoch: int
) -> tuple[dict[str, torch.Tensor], float, int]:
    """The scheduled LR for this step, then `train_step`; a non-finite loss stops the run
    naming the step, the term and the last good checkpoint. Returns (loss terms, LR, batch)."""
    cfg, progress = run.cfg, run.progress
    iters = len(run.loaders.train)
    lr = cfg.train.lr * lr_factor(
        progress.step,
        total_steps=iters * cfg.train.epochs,
        warmup_steps=iters * cfg.train.warmup_epochs,
        warmup_ratio=cfg.train.warmup_ratio,
        power=cfg.train.poly_power,
    )
    set_lr(run.optimizer, lr)
    rgb, thermal, label = _to_device(batch, run.device, cfg.train.channels_last)
    try:
        terms = train_step(
            run.model,
            run.raw_model,
            run.optimizer,
            (rgb, thermal, label),
            device=run.device,
            dtype=run.dtype,
            grad_clip=cfg.train.grad_clip,
            info=run.info,
        )
    except NonFiniteLossError as error:
        last = run.last_path
        kept = f"{last} (epoch {progress.epoch})" if last.is_file() else "none"
        raise TrainingError(
            f"{cfg.run_id}: stopped at step {progress.step + 1} (epoch {epoch + 1}): "
            f"loss term {error.term!r} is {error.value}; last good checkpoint: {kept}"
        ) from error
    progress.step += 1
    return terms, lr, rgb.shape[0]


def train_step(
    model: torch.nn.Module,
    raw_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    grad_clip: float,
    info: runtime.Dist,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch already on the device: forward under autocast, the
    model's losses (which refuse non-finite terms), backward, optional clipping, AdamW.

    `model` is what runs the forward (maybe DDP-wrapped and/or compiled), `raw_model` the SARTM
    that owns the losses and parameters. Returns {"loss": total, term: value} as detached
    device tensors, so the caller decides when to pay a host sync. Raises NonFiniteLossError on
    every rank together, before the weights change. The benchmarks time this same function.
    """
    error = None
    try:
        with runtime.autocast(device, dtype):
            outputs = model(*batch[:2])
            loss, terms = raw_model.compute_loss(outputs, batch[2])
    except NonFiniteLossError as exc:
        error = exc
    error = _check_finite(error, info, device)
    if error is not None:
        raise error
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    optimizer.step()
    return {"loss": loss.detach(), **terms}


def _check_finite(
    error: NonFiniteLossError | None, info: runtime.Dist, device: torch.device
) -> NonFiniteLossError | None:
    """Under DDP every rank must stop together (a rank that raised alone would leave the others
    waiting in the gradient all-reduce): share a flag, one tiny all-reduce per step (on the
    device: NCCL reduces device tensors only)."""
    if not info.enabled:
        return error
    flag = torch.tensor([0.0 if error is None else 1.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if flag.item() and error is None:
        return NonFiniteLossError("(on another rank)", float("nan"))
    return error


def _mean_over_ranks(
    sums: dict[str, torch.Tensor], iters: int, info: runtime.Dist
) -> dict[str, float]:
    """Per-iteration means of the loss sums, averaged over the ranks (each saw 1/N of a batch)."""
    names = sorted(sums)
    values = torch.stack([sums[k].detach().cpu() for k in names]).double()
    if info.enabled:
        torch.distributed.all_reduce(values)
        values /= info.world_size
    return {k: float(v) / iters for k, v in zip(names, values)}


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool):
    """The batch's tensors on the device (non-blocking: the loader pins memory on GPUs)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rgb = batch["rgb"].to(device, non_blocking=True).contiguous(memory_format=fmt)
    thermal = batch["thermal"].to(device, non_blocking=True).contiguous(memory_format=fmt)
    return rgb, thermal, batch["label"].to(device, non_blocking=True)


def _validation_due(run: Run) -> bool:
    """Every `val_every` epochs, and after the last one (so the final epoch is always scored)."""
    epoch, train = run.progress.epoch, run.cfg.train
    return epoch % train.val_every == 0 or epoch == train.epochs


def _validate(run: Run) -> dict[str, float]:
    """Scores on the selection split (summed over the ranks), as `<split>_<metric>` columns;
    a better mIoU makes this epoch the best one."""
    scores = score_loader(
        run.raw_model,
        run.loaders.eval,
        num_classes=len(run.classes),
        device=run.device,
        dtype=run.dtype,
    )["all"]
    progress, split = run.progress, run.loaders.select_split
    if scores["miou"] > progress.best_metric:
        progress.best_metric, progress.best_epoch = scores["miou"], progress.epoch
    return {f"{split}_{k}": scores[k] for k in ("miou", "macc", "mf1", "pixel_acc")}


def _commit_epoch(run: Run, row: dict[str, Any]) -> None:
    """The epoch's commit: every rank's RNG state gathered, then rank 0 writes the similarity
    matrices when due (before the commit, so an epoch killed before it redoes them too), the
    atomic `last.pt` (the commit point), and what follows from it (`_publish`)."""
    rng = _gather(rng_state(), run.info)  # every rank's, so that each rank resumes exactly
    if not run.info.is_main:
        return
    progress, epochs = run.progress, run.cfg.train.epochs
    if progress.epoch in run.cfg.train.similarity_epochs:
        sim = _similarity(
            run.raw_model, run.loaders.eval, run.classes, run.device, run.dtype, progress.epoch,
            run.out_dir / paths.SIMILARITY,
        )  # fmt: skip
        _log_similarity(run.tracker, sim)
    committed = _checkpoint(run, rng)
    atomic_save(committed, run.last_path)  # the epoch's commit point
    _publish(committed, run.out_dir, run.tracker, resumed=False)
    run.log(
        f"epoch {progress.epoch}/{epochs} "
        + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
    )


def _gather(item: Any, info: runtime.Dist) -> list[Any]:
    """One entry per rank (rank order); `[item]` outside torch.distributed."""
    if not info.enabled:
        return [item]
    out: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(out, item)
    return out


def _checkpoint(run: Run, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """`last.pt`: everything needed to resume exactly, and to rebuild the model for inference."""
    progress, meta = run.progress, run.loaders.train_set.meta
    return {
        "format": TRAIN_FORMAT,
        "kind": "last",
        "epoch": progress.epoch,
        "step": progress.step,
        "model": run.raw_model.trainable_state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "best": {
            "metric": progress.best_metric,
            "epoch": progress.best_epoch,
            "split": run.loaders.select_split,
        },
        "history": progress.history,
        "train_time_s": progress.train_time_s,
        "rng": rng,
        "config": run.cfg.to_dict(),
        "config_hash": run.cfg.hash(),
        "training_identity": run.cfg.training_identity(),
        "base": run.base.as_dict(),
        "classes": run.classes,
        "palette": meta["palette"],
        "ignore_index": meta.get("ignore_index", 255),
        "normalisation": dataclasses.asdict(run.loaders.train_set.transform.normalisation),
        "text_embeddings": run.text,
        "mlflow_run_id": progress.mlflow_run_id,
        "world_size": run.info.world_size,
        "params": run.params,
    }


def _publish(state: dict[str, Any], out_dir: Path, tracker, *, resumed: bool) -> None:
    """What follows an epoch's commit (`last.pt`), derived from it alone: `best.pt` when this
    epoch is the best so far, `history.csv`, the MLflow metrics. A kill may cut it short, so a
    resume replays it from the loaded `last.pt`; each part is idempotent (`best.pt` is kept when
    it already holds this very epoch, MLflow gets only the steps it lacks)."""
    best_path = out_dir / paths.BEST
    if state["best"]["epoch"] == state["epoch"]:
        if not (resumed and _holds_epoch(best_path, state)):
            atomic_save({**state, "kind": "best"}, best_path)
    elif state["best"]["epoch"] == 0:  # not validated yet: a best.pt is a previous training's
        best_path.unlink(missing_ok=True)
    _write_history(out_dir / paths.HISTORY, state["history"])
    if resumed:
        tracker.log_history(state["history"])
    else:
        row = state["history"][-1]
        tracker.log_metrics(tracking.epoch_metrics(row), step=state["epoch"])


def _holds_epoch(path: Path, state: dict[str, Any]) -> bool:
    """Whether the checkpoint at `path` was written for the same committed epoch as `state`
    (the same history, timings included: not a previous training's file of that epoch)."""
    try:
        return load_checkpoint(path)["history"] == state["history"]
    except (TrainingCheckpointError, KeyError):
        return False


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """history.csv, one row per epoch (columns: every key any row has), replaced atomically."""
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


def _similarity(model, loader, classes, device, dtype, epoch: int, out_dir: Path) -> Path:
    """F8: text and visual class-similarity matrices on the first evaluation batch."""
    batch = next(iter(loader))
    rgb, thermal, label = _to_device(batch, device, False)
    model.eval()
    with torch.no_grad(), runtime.autocast(device, dtype):
        outputs = model(rgb, thermal)
    visual, text, present = model.similarity_matrices(outputs, label)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"epoch_{epoch}.npz"
    names = np.array([classes[i] for i in present])
    arrays = {"visual": visual, "class_ids": np.asarray(present), "classes": names}
    if text is not None:
        arrays["text"] = text
    np.savez(path, epoch=epoch, **arrays)
    return path


def _log_similarity(tracker, path: Path) -> None:
    """The matrices file and a heatmap figure of it, to MLflow."""
    # matplotlib only here, and without pyplot: it takes a second to import, and only
    # similarity epochs draw
    from matplotlib.figure import Figure

    tracker.log_artifact(path, "similarity")
    data = np.load(path)
    panels = [("visual", data["visual"])] + ([("text", data["text"])] if "text" in data else [])
    fig = Figure(figsize=(4.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    names = [str(n) for n in data["classes"]]
    for ax, (title, matrix) in zip(axes[0], panels):
        im = ax.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
        ax.set_title(f"{title} similarity, epoch {int(data['epoch'])}")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    tracker.log_figure(fig, f"similarity/{path.stem}.png")


def _finish(run: Run) -> dict[str, Any]:
    """The run's result (train_metrics.json); rank 0 writes it, logs it with history.csv and
    closes the MLflow run as FINISHED."""
    cfg, progress, tracker = run.cfg, run.progress, run.tracker
    result = {
        "run_id": cfg.run_id,
        "config_hash": cfg.hash(),
        "epochs": progress.epoch,
        "steps": progress.step,
        "selection_split": run.loaders.select_split,
        "best_epoch": progress.best_epoch,
        "best_miou": progress.best_metric if progress.best_epoch else None,
        "final": progress.history[-1] if progress.history else {},
        "train_time_s": progress.train_time_s,
        "params": run.params,
        "world_size": run.info.world_size,
        "checkpoints": {"last": str(run.last_path), "best": str(run.out_dir / paths.BEST)},
        "mlflow": {"experiment_id": tracker.experiment_id, "run_id": tracker.run_id},
    }
    if run.info.is_main:
        _write_json(run.out_dir / paths.TRAIN_METRICS, result)
        tracker.log_artifact(run.out_dir / paths.HISTORY)
        tracker.log_artifact(run.out_dir / paths.TRAIN_METRICS)
        tracker.end("FINISHED")
    return result


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """A JSON file, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
