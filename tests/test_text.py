"""The text-teacher cache: real open_clip code path with random weights, the CLI, refusals."""

from __future__ import annotations

import json
import pickle
from contextlib import nullcontext

import huggingface_hub.constants
import open_clip
import pytest
import torch
from click.testing import CliRunner

from sartm import config as cfgmod
from sartm import text as textmod
from sartm.cli import cli
from sartm.data.spec import spec_for
from sartm.text import TextCacheError, load_text_cache, read_text_cache

TINY = "sartm-test-clip"  # a 1-layer, 32-wide CLIP registered for these tests only
PARAMS = cfgmod.PROJECT_ROOT / "params.yaml"


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / f"{TINY}.json").write_text(
        json.dumps(
            {
                "embed_dim": 32,
                "quick_gelu": True,
                "vision_cfg": {
                    "image_size": 32,
                    "layers": 1,
                    "width": 32,
                    "patch_size": 16,
                    "head_width": 16,
                },
                "text_cfg": {
                    "context_length": 77,
                    "vocab_size": 49408,
                    "width": 32,
                    "heads": 2,
                    "layers": 1,
                },
            }
        )
    )
    open_clip.add_model_config(folder)
    return TINY


def build(classes=("background", "fire_extinguisher"), **kwargs):
    prompts = [c.replace("_", " ") for c in classes]
    kwargs.setdefault("model_name", TINY)
    kwargs.setdefault("pretrained", None)
    random = kwargs["pretrained"] is None
    with pytest.warns(textmod.RandomTextTeacherWarning) if random else nullcontext():
        return textmod.build_text_cache(list(classes), prompts, **kwargs)


class Foreign:
    """Not a tensor container: a weights_only load must refuse a pickle of it."""


def test_random_weights_are_fixed_normalised_and_recorded():
    rng_before = torch.get_rng_state()
    a = build()
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    b = build()
    assert torch.equal(a["embeddings"], b["embeddings"])  # same seed, same teacher
    emb = a["embeddings"]
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    assert not torch.allclose(emb[0], emb[1])
    assert a["random_weights"] is True and a["pretrained"] is None and a["model"] == TINY
    assert a["prompts"] == ["background", "fire extinguisher"]
    model, _ = textmod.load_text_encoder(TINY, None)
    assert model.visual is None and not model.training  # the vision tower is dropped


def test_dataset_prompts_known_template_and_custom(tmp_path):
    classes, prompts = textmod.dataset_prompts("synth-pst900")
    assert classes == list(spec_for("pst900").classes)
    assert prompts[1] == "fire extinguisher" and prompts[3] == "hand drill"  # label-id order
    _, templated = textmod.dataset_prompts("mfnet", "a photo of a {}.")
    assert templated[5] == "a photo of a car stop."
    with pytest.raises(TextCacheError, match="has no"):
        textmod.dataset_prompts("mfnet", "a photo")

    meta = tmp_path / "processed" / "custom-lab" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"classes": ["background", "hot_pipe"]}))
    assert textmod.dataset_prompts("custom-lab", data_root=tmp_path) == (
        ["background", "hot_pipe"],
        ["background", "hot pipe"],
    )
    with pytest.raises(TextCacheError, match="meta.json"):
        textmod.dataset_prompts("custom-none", data_root=tmp_path)


def test_round_trip_and_class_mismatch_refusal(tmp_path):
    cache = build(classes=("background", "car", "person"))
    path = textmod.save_text_cache(cache, tmp_path / "text" / "x.pt")
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]  # no temporary file left
    emb = load_text_cache(path, ["background", "car", "person"])
    assert torch.equal(emb, cache["embeddings"])
    with pytest.raises(TextCacheError) as info:
        load_text_cache(path, ["background", "person", "car"])
    message = str(info.value)
    assert str(path) in message
    assert "['background', 'car', 'person']" in message
    assert "['background', 'person', 'car']" in message
    textmod.save_text_cache(build(classes=("background", "car")), path)  # a cache: replaced
    assert load_text_cache(path, ["background", "car"]).shape[0] == 2


def test_a_users_file_is_never_overwritten(tmp_path):
    notes = tmp_path / "notes.pt"
    notes.write_text("my own file")
    with pytest.raises(TextCacheError, match=r"notes.pt: exists and is not a text cache"):
        textmod.save_text_cache(build(), notes)
    assert notes.read_text() == "my own file"


def test_unusable_cache_files_are_refused(tmp_path):
    with pytest.raises(TextCacheError, match="sartm embed"):
        read_text_cache(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(TextCacheError, match="not a readable"):
        read_text_cache(garbage)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(
        pickle.dumps(Foreign(), protocol=2)
    )  # an arbitrary object: weights_only refuses it
    with pytest.raises(TextCacheError, match="holds pickled Python objects"):
        read_text_cache(pickled)
    partial = tmp_path / "partial.pt"
    torch.save({"embeddings": torch.zeros(2, 4), "classes": ["a", "b"]}, partial)
    with pytest.raises(TextCacheError, match="needs keys"):
        read_text_cache(partial)
    cache = build()
    cache["classes"] = ["a", "b", "c"]
    torch.save(cache, tmp_path / "rows.pt")
    with pytest.raises(TextCacheError, match="one row per class"):
        read_text_cache(tmp_path / "rows.pt")


def test_local_weights_file(tmp_path):
    torch.manual_seed(123)
    model = open_clip.create_model(TINY, pretrained=None)
    weights = tmp_path / "clip.bin"
    torch.save(model.state_dict(), weights)
    tokens = open_clip.get_tokenizer(TINY)(["background", "fire extinguisher"])
    with torch.no_grad():
        want = model.eval().encode_text(tokens, normalize=True)
    cache = build(pretrained=str(weights))
    assert cache["random_weights"] is False and cache["pretrained"] == str(weights)
    torch.testing.assert_close(cache["embeddings"], want)


def test_bad_pretrained_values(tmp_path):
    with pytest.raises(TextCacheError, match="no such weights file"):
        build(pretrained=str(tmp_path / "absent.safetensors"))
    with pytest.raises(TextCacheError, match="open_clip tag of ViT-B-32-quickgelu.*openai"):
        build(model_name="ViT-B-32-quickgelu", pretrained="not-a-tag")
    with pytest.raises(TextCacheError, match="not an open_clip model"):
        build(model_name="ViT-Z-99", pretrained=None)


def test_missing_official_weights_offline_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", True
    )  # no network attempts, fail at once
    with pytest.raises(TextCacheError) as info:
        build(model_name="ViT-B-32-quickgelu", pretrained="openai", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message
    assert "text.pretrained" in message and "HF_HOME" in message


def test_default_text_encoder_with_random_weights():
    """The paper's teacher architecture (ViT-B/32 text tower, 512-d) on the real code path."""
    cache = build(classes=spec_for("mfnet").classes, model_name=textmod.DEFAULT_MODEL)
    assert cache["embeddings"].shape == (9, 512)
    torch.testing.assert_close(cache["embeddings"].norm(dim=1), torch.ones(9))


def test_cli_embed_default_path_and_explicit_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["embed", "pst900", "--params", str(PARAMS), "--set", f"text.model={TINY}"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.stderr  # the demo preset has no CLIP weights
    default = tmp_path / "data" / "text" / "synth-pst900.pt"  # where training reads it
    classes = list(spec_for("pst900").classes)
    emb = load_text_cache(default, classes)
    assert emb.shape == (5, 32)
    cache = read_text_cache(default)
    assert cache["random_weights"] and cache["template"] is None and cache["model"] == TINY

    out = tmp_path / "custom.pt"
    args += ["--out", str(out), "--set", "text.template=a photo of a {}."]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    cache = read_text_cache(out)
    assert cache["prompts"][1] == "a photo of a fire extinguisher."
    assert not torch.equal(cache["embeddings"], emb)


def test_cli_embed_reports_errors_cleanly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["embed", "custom-none", "--params", str(PARAMS), "--set", f"text.model={TINY}"]
    )
    assert result.exit_code == 1  # an undeclared dataset gets no other dataset's settings
    assert "custom-none: not a dataset of" in result.stderr and "datasets:" in result.stderr
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["embed", "fmb", "--params", str(PARAMS), "--set", "x.y=1"])
    assert result.exit_code == 1 and "unknown section" in result.stderr


def test_cli_embed_data_source_name_and_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["embed", "synth-fmb", "--params", str(PARAMS), "--set", f"text.model={TINY}"]
    result = CliRunner().invoke(cli, [*args, "--set", "data.root=store"])
    assert result.exit_code == 0, result.output
    emb = load_text_cache(tmp_path / "store" / "text" / "synth-fmb.pt", spec_for("fmb").classes)
    assert emb.shape == (15, 32)
