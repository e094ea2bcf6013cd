"""The CLIP text teacher, computed once per dataset and cached to a file (docs/method.md section 3).

Training never loads CLIP: it reads the cache with `load_text_cache`, which refuses a file made
for another class list. The cache is a `torch.save`d dict (read back with weights_only=True):

    embeddings      (C, D) float32, L2-normalised, one row per class in label-index order
    classes         class names, label-index order
    prompts         the exact strings fed to the text encoder
    model           open_clip model name (default ViT-B-32-quickgelu = OpenAI CLIP ViT-B/32)
    pretrained      open_clip tag or weights file; None for random weights
    template        prompt template or None (the authors feed the raw class names)
    random_weights  True when no pretrained weights were used (the offline demo): the text
                    teacher is then noise with a fixed seed and the language ablation means nothing
    seed            the seed of the random initialisation
    open_clip       the open_clip version that produced the file

open_clip has no public way to build the text tower alone, and its checkpoint loading (tags,
local files, format conversions) works on the whole CLIP model; we therefore build the whole
model and drop the vision tower right after loading. For ViT-B/32 that costs 0.5-0.9 s and
335 MiB once per dataset (measured on CPU: the whole random-weight model builds in 0.9-1.3 s,
the text tower alone in 0.45 s).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sartm import paths, torchfile
from sartm.config import TextConfig
from sartm.data.common import DataError, load_meta
from sartm.data.spec import spec_for, spec_names
from sartm.errors import SartmError

DEFAULT_MODEL = "ViT-B-32-quickgelu"
RANDOM_SEED = 0
REQUIRED_KEYS = ("embeddings", "classes", "prompts", "model", "pretrained", "template",
                 "random_weights")  # fmt: skip
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")
# open_clip is imported inside the functions that build the encoder: training only reads the
# cache and should not pay for importing open_clip (or need it installed).


class TextCacheError(SartmError, RuntimeError):
    """The text teacher cannot be built or its cache file is unusable; the message says why."""


class RandomTextTeacherWarning(UserWarning):
    """The text teacher runs with random weights: L_se then distils noise."""


def dataset_prompts(
    dataset: str, template: str | None = None, *, data_root: Path = paths.DATA
) -> tuple[list[str], list[str]]:
    """(class names, CLIP prompts) of a known dataset, its synthetic stand-in, or custom data.

    Built-in datasets take their names from their spec (sartm.data.builtin); any other name must
    be a prepared dataset whose meta.json lists its `classes`.
    """
    _check_template(template)
    try:
        spec = spec_for(dataset)
    except KeyError:
        root = paths.processed_dir(dataset, Path(data_root))
        try:
            classes = list(load_meta(root)["classes"])
        except (DataError, KeyError, ValueError) as exc:
            raise TextCacheError(
                f"{dataset!r} is not a built-in dataset ({', '.join(spec_names())}), and "
                f"{root / 'meta.json'} gives no class list: {exc}"
            ) from exc
        names = [c.replace("_", " ") for c in classes]  # the rule of DatasetSpec.text_prompts
        return classes, [template.format(n) for n in names] if template else names
    return list(spec.classes), spec.text_prompts(template)


def _check_template(template: str | None) -> None:
    if template is not None and "{}" not in template:
        raise TextCacheError(f"text.template {template!r} has no '{{}}' for the class name")


def _resolve_pretrained(model_name: str, pretrained: str | None) -> str | None:
    """An existing weights file, a known open_clip tag of the model, or None (random weights)."""
    import open_clip

    if pretrained is None:
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        return pretrained
    if os.sep in pretrained or path.suffix in WEIGHT_SUFFIXES:
        raise TextCacheError(f"text.pretrained: {pretrained}: no such weights file")
    raise TextCacheError(
        f"text.pretrained: {pretrained!r} is neither a file nor an open_clip tag of {model_name}; "
        f"its tags: {', '.join(tags) or '(none)'}; use null for random weights"
    )


def _missing_weights_message(model_name: str, tag: str, exc: Exception) -> str:
    import open_clip

    source = open_clip.get_pretrained_cfg(model_name, tag)
    hub = source.get("hf_hub", "").rstrip("/")
    where = []
    if hub:
        where.append(
            f"https://huggingface.co/{hub} (open_clip_model.safetensors or "
            "open_clip_pytorch_model.bin)"
        )
    if source.get("url"):
        where.append(f"{source['url']} (a TorchScript archive: prefer the file above)")
    return (
        f"CLIP weights {model_name} / {tag!r} are not available here ({exc}).\n"
        f"Download {' or '.join(where) or 'them'} on a machine with internet access and either "
        "set text.pretrained to the file's path (params.yaml, or --set text.pretrained=PATH), "
        "or copy the Hugging Face cache that open_clip fills ($HF_HOME, by default "
        "~/.cache/huggingface) to this machine. Or use text.pretrained=null for random weights "
        "(the offline demo; the language ablation is then not meaningful)."
    )


def load_text_encoder(
    model_name: str, pretrained: str | None, *, cache_dir: str | None = None
) -> tuple[torch.nn.Module, Any]:
    """(open_clip model without its vision tower, tokenizer). Random weights use RANDOM_SEED."""
    import open_clip

    if not model_name:
        raise TextCacheError("text.model is empty (loss.w3 = 0 runs need no text cache)")
    if model_name not in open_clip.list_models() and ":" not in model_name:
        raise TextCacheError(
            f"text.model: {model_name!r} is not an open_clip model; e.g. {DEFAULT_MODEL} "
            "(see open_clip.list_models())"
        )
    resolved = _resolve_pretrained(model_name, pretrained)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)  # random weights are the same on every machine
            model = open_clip.create_model(
                model_name,
                pretrained=resolved,
                pretrained_text=resolved is not None,
                cache_dir=cache_dir,
                device="cpu",
            )
        tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir)
    except (RuntimeError, OSError, ValueError) as exc:
        if resolved is not None and not Path(resolved).is_file():  # a tag: weights not cached
            raise TextCacheError(_missing_weights_message(model_name, resolved, exc)) from exc
        raise TextCacheError(
            f"cannot build the open_clip text encoder {model_name} "
            f"(pretrained={pretrained!r}): {exc}"
        ) from exc
    if hasattr(model, "visual"):
        model.visual = None  # only the text tower is used
    return model.eval(), tokenizer


def encode_prompts(
    prompts: Sequence[str],
    *,
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = "openai",
    cache_dir: str | None = None,
) -> Tensor:
    """L2-normalised text embeddings (C, D) float32 of the prompts, on the CPU."""
    model, tokenizer = load_text_encoder(model_name, pretrained, cache_dir=cache_dir)
    with torch.inference_mode():
        embeddings = model.encode_text(tokenizer(list(prompts)), normalize=True)
    return embeddings.float().contiguous()


def build_text_cache(
    classes: Sequence[str],
    prompts: Sequence[str],
    *,
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = "openai",
    template: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The cache dict for one class list (see the module docstring for its keys)."""
    import open_clip

    if len(classes) != len(prompts) or not classes:
        raise TextCacheError(f"{len(classes)} classes but {len(prompts)} prompts")
    if pretrained is None:
        warnings.warn(
            f"text teacher {model_name} has RANDOM weights (seed {RANDOM_SEED}): L_se distils "
            "noise, so the language ablation is not meaningful",
            RandomTextTeacherWarning,
            stacklevel=2,
        )
    embeddings = encode_prompts(
        prompts, model_name=model_name, pretrained=pretrained, cache_dir=cache_dir
    )
    return {
        "embeddings": embeddings,
        "classes": list(classes),
        "prompts": list(prompts),
        "model": model_name,
        "pretrained": pretrained,
        "template": template,
        "random_weights": pretrained is None,
        "seed": RANDOM_SEED,
        "open_clip": open_clip.__version__,
    }


def embed_dataset(
    dataset: str,
    text: TextConfig,
    *,
    data_root: Path = paths.DATA,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The cache dict for a dataset's classes, with the encoder settings of `cfg.text`."""
    classes, prompts = dataset_prompts(dataset, text.template, data_root=data_root)
    return build_text_cache(
        classes,
        prompts,
        model_name=text.model,
        pretrained=text.pretrained,
        template=text.template,
        cache_dir=cache_dir,
    )


def save_text_cache(cache: dict[str, Any], path: str | Path) -> Path:
    """Write the cache atomically (a half-written file never looks like a cache); an existing
    file is replaced only when it is a text cache itself, never a file of the user's."""
    path = Path(path)
    if path.exists():
        try:
            read_text_cache(path)
        except TextCacheError as exc:
            raise TextCacheError(
                f"{path}: exists and is not a text cache; refusing to overwrite it "
                "(choose another --out, or move the file away)"
            ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(cache, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_text_cache(path: str | Path) -> dict[str, Any]:
    """Read and check a cache file (weights_only=True); errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise TextCacheError(
            f"{path}: no text cache; make it with `sartm embed <dataset> --out {path}`"
        )
    cache = torchfile.load(path, TextCacheError, "text cache")
    if not isinstance(cache, dict) or any(k not in cache for k in REQUIRED_KEYS):
        found = sorted(cache) if isinstance(cache, dict) else type(cache).__name__
        raise TextCacheError(f"{path}: not a text cache: needs keys {REQUIRED_KEYS}, has {found}")
    emb = cache["embeddings"]
    if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(cache["classes"]):
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise TextCacheError(
            f"{path}: embeddings {shape} do not give one row per class "
            f"({len(cache['classes'])} classes)"
        )
    if not bool(torch.isfinite(emb).all()):
        raise TextCacheError(f"{path}: embeddings contain NaN or infinite values")
    return cache


def load_text_cache(path: str | Path, classes: Sequence[str]) -> Tensor:
    """The (C, D) float32 text embeddings of `classes`, refusing a cache for another class list."""
    cache = read_text_cache(path)
    if list(cache["classes"]) != list(classes):
        raise TextCacheError(
            f"{path}: made for classes {list(cache['classes'])}, but the dataset has "
            f"{list(classes)}; re-run `sartm embed` for this dataset"
        )
    return cache["embeddings"].float()
