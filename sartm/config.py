"""params.yaml -> one validated, typed configuration per run.

Resolution order (documented at the top of params.yaml):
base sections -> preset.set -> preset.per_dataset[dataset] -> runs[run].set -> --set overrides,
then the section-4 rules of docs/method.md: a loss weight of 0 removes what only that term needs, so two
configurations that differ only in unused parts canonicalise (and hash) to the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sartm.data import builtin
from sartm.data.builtin import SYNTHETIC_PREFIX
from sartm.errors import SartmError

SECTIONS = ("data", "synth", "model", "loss", "text", "train", "eval", "tracking")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.json"
DEFAULT_PARAMS = Path("params.yaml")
CUSTOM_PREFIX = "custom-"
CUSTOM_NAME_CHARS = "[A-Za-z0-9_.-]+"  # the <name> of custom-<name>


class ConfigError(SartmError, ValueError):
    """A settings file or override that does not fit the schema; the message names file and key."""


class _Section:
    """A typed config section; integer settings must be integers (2.0 epochs or True are not)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if f.type == "tuple[int, ...]" else (value,)
            if f.type in ("int", "int | None", "tuple[int, ...]") and not all(
                v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values
            ):
                raise ConfigError(f"{type(self).__name__}.{f.name}: {value!r} is not an integer")


@dataclass(frozen=True)
class DataConfig(_Section):
    dataset: str
    root: str
    crop_size: int
    eval_size: int
    eval_resize: bool
    normalisation: str
    scale_range: tuple[float, float]
    flip_p: float
    jitter_p: float
    blur_p: float
    num_workers: int
    max_samples: int | None


@dataclass(frozen=True)
class SynthConfig(_Section):
    width: int
    seed: int
    samples: dict[str, int]


@dataclass(frozen=True)
class ModelConfig(_Section):
    backbone: str
    checkpoint: str | None
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_sharing: str
    aux_head: str
    aux_channels: int
    predict: str


@dataclass(frozen=True)
class LossConfig(_Section):
    w0: float
    w1: float
    w2: float
    w3: float
    ce: str
    ohem_threshold: float
    ohem_min_kept: float
    ema_momentum: float


@dataclass(frozen=True)
class TextConfig(_Section):
    model: str
    pretrained: str | None
    template: str | None


@dataclass(frozen=True)
class TrainConfig(_Section):
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    warmup_ratio: float
    poly_power: float
    grad_clip: float | None
    precision: str
    compile: str | bool  # auto: on for CUDA, off on CPUs (see runtime.compile_enabled)
    fused_adamw: bool
    channels_last: bool
    tf32: bool
    seed: int
    val_every: int
    similarity_epochs: tuple[int, ...]
    device: str


@dataclass(frozen=True)
class EvalConfig(_Section):
    checkpoint: str
    multi_scale: bool
    scales: tuple[float, ...]
    flip: bool
    modality_robustness: bool
    save_predictions: int
    tsne_pixels: int


@dataclass(frozen=True)
class TrackingConfig(_Section):
    uri: str
    artifact_root: str
    experiment: str


SECTION_TYPES = {
    "data": DataConfig,
    "synth": SynthConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "text": TextConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "tracking": TrackingConfig,
}

# Settings that change how a run is executed or logged, not what it learns: left out of the hash
# so that, e.g., more data workers or another tracking server never retrain a finished run.
# The eval section never changes what is trained either: evaluation settings re-run evaluation only.
EXECUTION_ONLY = {
    "data": {"root", "num_workers"},
    # speed switches: the same computation up to floating-point rounding
    "train": {
        "device",
        "similarity_epochs",
        "val_every",
        "compile",
        "fused_adamw",
        "channels_last",
        "tf32",
    },
    "eval": {f.name for f in dataclasses.fields(EvalConfig)},
    "tracking": {"uri", "artifact_root", "experiment"},
}


@dataclass(frozen=True)
class Config:
    """One resolved run: every setting, plus where it came from."""

    data: DataConfig
    synth: SynthConfig
    model: ModelConfig
    loss: LossConfig
    text: TextConfig
    train: TrainConfig
    eval: EvalConfig
    tracking: TrackingConfig
    preset: str = "demo"
    run: str = "adhoc"
    dataset: str = "mfnet"  # the logical dataset (built-in or params.yaml `datasets:`) of the run
    seed_index: int = 0
    preset_description: str = ""
    overrides: tuple[str, ...] = field(default=())

    @property
    def synthetic(self) -> bool:
        """True when the run reads a synthetic stand-in (every output must say so)."""
        return self.data.dataset.startswith(SYNTHETIC_PREFIX)

    @property
    def run_id(self) -> str:
        """`<dataset>/<run>` (plus `/seed<N>` for repeats): also the MLflow run name."""
        base = f"{self.dataset}/{self.run}"
        return base if self.seed_index == 0 else f"{base}/seed{self.train.seed}"

    def sections(self) -> dict[str, dict[str, Any]]:
        return {name: _plain(dataclasses.asdict(getattr(self, name))) for name in SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "run": self.run,
            "dataset": self.dataset,
            "seed_index": self.seed_index,
            **self.sections(),
        }

    def training_identity(self) -> dict[str, Any]:
        """What determines the trained model: the canonical sections minus execution-only keys."""
        out = {}
        for name, values in self.sections().items():
            skip = EXECUTION_ONLY.get(name, set())
            kept = {k: v for k, v in values.items() if k not in skip}
            if kept:
                out[name] = kept
        return out

    def hash(self) -> str:
        """Stable 12-hex-digit hash of the training identity (checkpoints and resumes check it)."""
        blob = json.dumps(self.training_identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Config:
        """A copy with more `section.key=value` overrides applied (and re-validated)."""
        sections = self.sections()
        for item in overrides:
            key, value = parse_override(item)
            _set_dotted(sections, key, value, source="--set")
        return _build(
            sections,
            preset=self.preset,
            run=self.run,
            dataset=self.dataset,
            seed_index=self.seed_index,
            preset_description=self.preset_description,
            overrides=tuple(self.overrides) + tuple(overrides),
        )


def _plain(value: Any) -> Any:
    """Tuples -> lists so that dicts compare and serialise the same as freshly loaded YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def source_pattern() -> str:
    """Regex of a data source: a built-in dataset, its stand-in or custom-<name> (the schema's
    dataset_source and the Snakemake wildcards). Registered names need no escaping."""
    return "|".join(
        [*builtin.names(), *builtin.stand_in_names(), CUSTOM_PREFIX + CUSTOM_NAME_CHARS]
    )


def schema() -> dict[str, Any]:
    """params.schema.json with the built-in datasets filled in (the file leaves their names
    open, so that the registry, sartm.data.builtin, is the one list)."""
    return _schema(builtin.names(), builtin.stand_in_names(), source_pattern())


@cache
def _schema(datasets: tuple[str, ...], stand_ins: tuple[str, ...], sources: str) -> dict[str, Any]:
    out = json.loads(SCHEMA_PATH.read_text())
    filled = {
        "logical_dataset": {"enum": list(datasets)},
        "stand_in": {"enum": list(stand_ins)},
        "dataset_source": {"pattern": f"^({sources})$"},
        "own_dataset_name": {"not": {"enum": list(datasets)}},
    }
    for name, keywords in filled.items():
        out["$defs"][name] = {**out["$defs"][name], **keywords}
    return out


def _format_error(err: jsonschema.ValidationError, source: str) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    msg = err.message
    if err.validator == "enum":
        msg = f"{err.instance!r} is not allowed; allowed values: {', '.join(map(repr, err.validator_value))}"
    elif err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        if allowed:
            msg += f"; allowed keys: {', '.join(allowed)}"
    return f"{source}: {where}: {msg}"


# JSON Schema counts 2.0 as an integer; a setting that Python uses as a count or a size must not be
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    ),
)


def _validate(instance: Any, schema_: dict[str, Any], source: str) -> None:
    validator = _Validator(schema_)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_format_error(e, source) for e in errors))


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read and validate params.yaml; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such settings file")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    _validate(params, schema(), str(path))
    if params["preset"] not in params["presets"]:
        raise ConfigError(
            f"{path}: preset: {params['preset']!r} is not defined; "
            f"allowed values: {', '.join(map(repr, params['presets']))}"
        )
    return params


def parse_override(item: str) -> tuple[str, Any]:
    """`train.epochs=2` -> ("train.epochs", 2); the value is read as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item}: value is not valid YAML: {exc}") from exc
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return key, value


def _set_dotted(sections: dict[str, dict[str, Any]], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    if len(parts) < 2 or parts[0] not in sections:
        raise ConfigError(
            f"{source}: {key}: unknown section {parts[0]!r}; allowed sections: {', '.join(SECTIONS)}"
        )
    section = sections[parts[0]]
    if parts[1] not in section:
        near = difflib.get_close_matches(parts[1], list(section), n=3)
        hint = f" (did you mean {', '.join(parts[0] + '.' + n for n in near)}?)" if near else ""
        raise ConfigError(
            f"{source}: {key}: unknown key{hint}; allowed keys: {', '.join(sorted(section))}"
        )
    target = section
    for part in parts[1:-1]:
        if not isinstance(target.get(part), dict):
            raise ConfigError(f"{source}: {key}: {part!r} is not a mapping")
        target = target[part]
    target[parts[-1]] = copy.deepcopy(value)


def _preset_chain(params: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The preset and the presets it extends, base first."""
    chain, seen = [], set()
    while name:
        if name in seen:
            raise ConfigError(f"presets: {name}: 'extends' forms a cycle")
        if name not in params["presets"]:
            raise ConfigError(
                f"presets: {name!r} is not defined; allowed values: {', '.join(params['presets'])}"
            )
        seen.add(name)
        preset = params["presets"][name]
        chain.insert(0, preset)
        name = preset.get("extends")
    return chain


def logical_datasets(params: dict[str, Any]) -> tuple[str, ...]:
    """The built-in datasets (sartm.data.builtin), then the user's own (params.yaml `datasets:`)."""
    return (*builtin.names(), *params.get("datasets", {}))


def own_dataset(params: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """The `datasets:` entry of a dataset of the user's (None for a built-in one)."""
    return params.get("datasets", {}).get(dataset)


def run_list(params: dict[str, Any], preset: str | None = None) -> dict[str, dict[str, Any]]:
    """params.yaml's `runs:` plus the extra runs of the preset chain (`presets.<name>.runs`),
    which exist in that preset alone (e.g. the demo's random-encoder run); each of the user's
    own datasets joins the runs its `datasets.<name>.runs` names."""
    out = dict(params["runs"])
    for item in _preset_chain(params, preset or params["preset"]):
        for name, spec in item.get("runs", {}).items():
            if name in params["runs"]:
                raise ConfigError(f"presets: extra run {name!r} is already in runs:")
            out[name] = spec
    for dataset, entry in params.get("datasets", {}).items():
        for run in entry["runs"]:
            if run not in out:
                raise ConfigError(
                    f"params.yaml: datasets.{dataset}.runs: {run!r} is not a run of runs: "
                    f"(known: {', '.join(out)})"
                )
            out[run] = {**out[run], "datasets": [*out[run]["datasets"], dataset]}
    return out


def run_seeds(
    params: dict[str, Any], dataset: str, run: str | None, preset: str | None = None
) -> list[int]:
    """The seeds a run is trained with: `seeds`, then the preset's `repeat` seeds for
    `dataset/run` (a few extra seeds of one run show the seed-to-seed spread)."""
    seeds = list(params.get("seeds", [params["train"]["seed"]]))
    for item in _preset_chain(params, preset or params["preset"]):
        for seed in item.get("repeat", {}).get(f"{dataset}/{run}", []):
            if seed not in seeds:
                seeds.append(seed)
    return seeds


def seed_count(params: dict[str, Any], preset: str | None = None) -> int:
    """The largest number of seeds of any run (the number of alias maps, see `run_aliases`)."""
    return max(
        len(run_seeds(params, ds, run, preset))
        for run, spec in run_list(params, preset).items()
        for ds in spec["datasets"]
    )


def pretrain_settings(params: dict[str, Any], preset: str | None = None) -> dict[str, Any]:
    """`pretrain:` of params.yaml with the preset chain's `pretrain` overrides applied."""
    out = copy.deepcopy(params["pretrain"])
    for item in _preset_chain(params, preset or params["preset"]):
        out.update(copy.deepcopy(item.get("pretrain", {})))
    return out


def uses_stand_in(cfg: Config, params: dict[str, Any]) -> bool:
    """True when the run's base checkpoint is the preset's pretrained stand-in (the pipeline
    then makes it before training)."""
    out = pretrain_settings(params, cfg.preset)["out"]
    return cfg.model.checkpoint is not None and Path(cfg.model.checkpoint) == Path(out)


def canonicalise(sections: dict[str, dict[str, Any]]) -> None:
    """Apply docs/method.md section 4 in place: what a zero weight switches off is not built."""
    loss, model, text = sections["loss"], sections["model"], sections["text"]
    if model["lora_alpha"] is None:  # the paper's dQ = W_a W_b: no scaling, alpha / r = 1
        model["lora_alpha"] = float(model["lora_rank"])
    if model["aux_head"] == "none":
        loss["w1"] = 0.0
    if loss["w1"] == 0:
        model["aux_head"] = "none"
        model["aux_channels"] = 0
        if model["predict"] == "s0+s1":
            raise ConfigError("model.predict: 's0+s1' needs the S1 head, but loss.w1 is 0")
    if loss["w2"] == 0 and loss["w3"] == 0:
        loss["ema_momentum"] = 0.0  # no prototypes at all
    elif loss["w2"] == 0:
        loss["ema_momentum"] = 0.0  # L_se uses batch prototypes only; no EMA state
    if loss["w3"] == 0:
        text.update(model="", pretrained=None, template=None)  # no text cache is read
    for key in ("w0", "w1", "w2", "w3"):
        loss[key] = float(loss[key])


def _build(sections: dict[str, dict[str, Any]], **meta: Any) -> Config:
    canonicalise(sections)
    _validate(sections, {**schema(), **schema()["$defs"]["run_config"]}, f"run {meta.get('run')}")
    typed = {}
    for name, cls in SECTION_TYPES.items():
        values = dict(sections[name])
        for f in dataclasses.fields(cls):
            if isinstance(values.get(f.name), list):
                values[f.name] = tuple(values[f.name])
        typed[name] = cls(**values)
    return Config(**typed, **meta)


def resolve(
    params: dict[str, Any] | None = None,
    *,
    dataset: str = "mfnet",
    run: str | None = None,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed_index: int = 0,
) -> Config:
    """The configuration of one run of the pipeline (or an ad-hoc run when `run` is None)."""
    params = load_params() if params is None else params
    preset = preset or params["preset"]
    if dataset not in logical_datasets(params):
        raise ConfigError(
            f"dataset: {dataset!r} is not allowed; allowed values: "
            f"{', '.join(logical_datasets(params))} (your own: params.yaml datasets:)"
        )
    sections = {name: copy.deepcopy(params[name]) for name in SECTIONS}
    chain = _preset_chain(params, preset)
    sources: dict[str, str] = {}
    for item in chain:
        sources.update(item.get("sources", {}))
        for key, value in item.get("set", {}).items():
            _set_dotted(sections, key, value, source=f"presets.{preset}.set")
        for key, value in item.get("per_dataset", {}).get(dataset, {}).items():
            _set_dotted(sections, key, value, source=f"presets.{preset}.per_dataset.{dataset}")
    sections["data"]["dataset"] = sources.get(dataset, dataset)
    if (own := own_dataset(params, dataset)) is not None:
        sections["data"]["dataset"] = CUSTOM_PREFIX + dataset
        for key, value in own.get("set", {}).items():
            _set_dotted(sections, key, value, source=f"datasets.{dataset}.set")
    if run is not None:
        runs = run_list(params, preset)
        if run not in runs:
            near = difflib.get_close_matches(run, list(runs), n=3)
            raise ConfigError(
                f"runs: {run!r} is not defined in preset {preset!r}"
                + (f" (did you mean {near}?)" if near else "")
            )
        spec = runs[run]
        if dataset not in spec["datasets"]:
            raise ConfigError(f"runs.{run}: runs on {spec['datasets']}, not on {dataset!r}")
        for key, value in spec.get("set", {}).items():
            _set_dotted(sections, key, value, source=f"runs.{run}.set")
    seeds = run_seeds(params, dataset, run, preset)
    if not 0 <= seed_index < len(seeds):
        raise ConfigError(
            f"seeds: {dataset}/{run} has no seed number {seed_index}; it has {len(seeds)}"
        )
    sections["train"]["seed"] = seeds[seed_index]
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(sections, key, value, source="--set")
    return _build(
        sections,
        preset=preset,
        run=run or "adhoc",
        dataset=dataset,
        seed_index=seed_index,
        preset_description=chain[-1].get("description", ""),
        overrides=tuple(overrides),
    )


def _listed_runs(params: dict[str, Any], preset: str | None) -> list[tuple[int, str, Config]]:
    """(seed index, `dataset/run`, configuration) of every listed run and each of its seeds,
    seeds outermost, then params.yaml's order: resolved once for both functions below."""
    out = []
    runs = run_list(params, preset)
    for seed_index in range(seed_count(params, preset)):
        for run, spec in runs.items():
            for dataset in spec["datasets"]:
                if seed_index < len(run_seeds(params, dataset, run, preset)):
                    cfg = resolve(
                        params, dataset=dataset, run=run, preset=preset, seed_index=seed_index
                    )
                    out.append((seed_index, f"{dataset}/{run}", cfg))
    return out


def _distinct(listed: list[tuple[int, str, Config]]) -> dict[tuple[str, str], Config]:
    seen: dict[tuple[str, str], Config] = {}
    for _, _, cfg in listed:
        seen.setdefault((cfg.dataset, cfg.hash()), cfg)
    return seen


def pipeline_runs(params: dict[str, Any], preset: str | None = None) -> list[Config]:
    """Every training run of the run list, one per distinct canonical configuration.

    Runs whose canonical configuration is identical are ONE run (docs/method.md section 6); the first
    name in params.yaml's order is kept, the others alias it (see `run_aliases`).
    """
    return list(_distinct(_listed_runs(params, preset)).values())


def seed_run_aliases(params: dict[str, Any], preset: str | None = None) -> list[dict[str, str]]:
    """For each seed: `<dataset>/<run>` of every listed run -> the run_id of the one training job
    that serves it (runs with fewer seeds are left out of the later maps)."""
    listed = _listed_runs(params, preset)
    canonical = {key: cfg.run_id for key, cfg in _distinct(listed).items()}
    out: list[dict[str, str]] = [{} for _ in range(seed_count(params, preset))]
    for seed_index, name, cfg in listed:
        out[seed_index][name] = canonical[(cfg.dataset, cfg.hash())]
    return out


def run_aliases(
    params: dict[str, Any], preset: str | None = None, seed_index: int = 0
) -> dict[str, str]:
    """`seed_run_aliases` for one seed (its seed_index-th)."""
    return seed_run_aliases(params, preset)[seed_index]


def save_config(cfg: Config, path: str | Path) -> None:
    """Write a resolved configuration (what `--config FILE` reads back)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(
    raw: Any, overrides: list[str] | tuple[str, ...] = (), *, source: str = "config"
) -> Config:
    """A Config from `Config.to_dict()` output (e.g. stored in a checkpoint), validated."""
    meta_keys = ("preset", "run", "dataset", "seed_index")
    if not isinstance(raw, dict) or any(k not in raw for k in (*meta_keys, *SECTIONS)):
        raise ConfigError(
            f"{source}: not a resolved sartm config (needs {', '.join((*meta_keys, *SECTIONS))})"
        )
    sections = copy.deepcopy({name: raw[name] for name in SECTIONS})
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(sections, key, value, source="--set")
    return _build(sections, **{k: raw[k] for k in meta_keys}, overrides=tuple(overrides))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a file written by `save_config`, validating it like params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read resolved config: {exc}") from exc
    return config_from_dict(raw, overrides, source=str(path))
