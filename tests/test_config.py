"""params.yaml, the schema, resolution order, overrides and canonical run identity."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from sartm import config as cfgmod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return cfgmod.load_params(ROOT / "params.yaml")


def write_params(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_schema_sections_match_typed_config():
    schema = cfgmod.schema()
    for name, cls in cfgmod.SECTION_TYPES.items():
        schema_keys = set(schema["$defs"][name]["properties"])
        fields = {f.name for f in dataclasses.fields(cls)}
        assert schema_keys == fields, name
        required = set(schema["$defs"]["run_config"]["properties"][name]["allOf"][1]["required"])
        assert required == fields, name


def test_bad_enum_value_names_key_and_allowed_values(tmp_path):
    path = write_params(tmp_path, lambda d: d["model"].update(aux_head="unet"))
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load_params(path)
    msg = str(err.value)
    assert str(path) in msg and "model.aux_head" in msg
    assert "'unet'" in msg and "'fpn'" in msg and "'segformer'" in msg


def test_unknown_key_is_rejected_with_allowed_keys(tmp_path):
    path = write_params(tmp_path, lambda d: d["train"].update(epoch=3))
    with pytest.raises(
        cfgmod.ConfigError, match=r"train.*'epoch' was unexpected.*allowed keys:.*epochs"
    ):
        cfgmod.load_params(path)


def test_undefined_preset_is_rejected(tmp_path):
    path = write_params(tmp_path, lambda d: d.update(preset="fast"))
    with pytest.raises(cfgmod.ConfigError, match="preset: 'fast' is not defined"):
        cfgmod.load_params(path)


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="no such settings file"):
        cfgmod.load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(cfgmod.ConfigError, match="not valid YAML"):
        cfgmod.load_params(bad)


def test_resolution_order(params):
    cfg = cfgmod.resolve(params, dataset="pst900", run="rank8", preset="paper")
    assert cfg.data.dataset == "pst900" and not cfg.synthetic
    assert cfg.data.crop_size == 1280  # presets.paper.per_dataset
    assert cfg.model.backbone == "sam2_hiera_b+"  # presets.paper.set
    assert cfg.model.lora_rank == 8  # runs.rank8.set
    cfg = cfgmod.resolve(
        params,
        dataset="pst900",
        run="rank8",
        preset="paper",
        overrides=["model.lora_rank=2", "train.epochs=3"],
    )
    assert cfg.model.lora_rank == 2 and cfg.train.epochs == 3  # --set wins
    assert cfgmod.parse_override("train.lr=1e-3") == ("train.lr", 0.001)
    assert cfgmod.parse_override("text.template=a {}") == ("text.template", "a {}")
    demo = cfgmod.resolve(params, dataset="mfnet", preset="demo")
    assert demo.synthetic and demo.data.dataset == "synth-mfnet"
    assert demo.model.backbone == "test_hiera_tiny"
    ci = cfgmod.resolve(params, dataset="fmb", preset="ci")  # extends demo
    assert ci.data.dataset == "synth-fmb" and ci.train.epochs == 1 and ci.data.max_samples == 8


def test_override_errors(params):
    with pytest.raises(
        cfgmod.ConfigError, match=r"train\.epoch: unknown key \(did you mean train\.epochs"
    ):
        cfgmod.resolve(params, overrides=["train.epoch=2"])
    with pytest.raises(cfgmod.ConfigError, match="unknown section 'optim'"):
        cfgmod.resolve(params, overrides=["optim.lr=2"])
    with pytest.raises(cfgmod.ConfigError, match=r"model\.lora_sharing.*allowed values"):
        cfgmod.resolve(params, overrides=["model.lora_sharing=both"])
    with pytest.raises(cfgmod.ConfigError, match="expected section.key=value"):
        cfgmod.resolve(params, overrides=["train.epochs"])
    with pytest.raises(cfgmod.ConfigError, match="runs on"):
        cfgmod.resolve(params, dataset="mfnet", run="rank4")


def test_zero_weights_canonicalise_unused_parts(params):
    a = cfgmod.resolve(params, dataset="fmb", overrides=["loss.w1=0", "model.aux_head=deeplab"])
    b = cfgmod.resolve(params, dataset="fmb", overrides=["loss.w1=0", "model.aux_channels=64"])
    assert a.model.aux_head == "none" and a.hash() == b.hash()
    c = cfgmod.resolve(params, dataset="fmb", overrides=["loss.w3=0", "text.template=a {}"])
    d = cfgmod.resolve(params, dataset="fmb", overrides=["loss.w3=0", "text.model=RN50"])
    assert c.hash() == d.hash() and c.text.pretrained is None
    e = cfgmod.resolve(params, dataset="fmb", overrides=["loss.w3=1"])
    assert e.hash() != c.hash()


def test_execution_only_settings_do_not_change_the_hash(params):
    a = cfgmod.resolve(params, dataset="mfnet")
    b = cfgmod.resolve(
        params, dataset="mfnet", overrides=["data.num_workers=7", "train.device=cpu"]
    )
    assert a.hash() == b.hash()
    assert a.hash() != cfgmod.resolve(params, dataset="mfnet", overrides=["train.lr=0.01"]).hash()


@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_run_list_resolves_to_30_training_runs(params, preset):
    """30 jobs of the paper's run list; the demo adds its own three (two seeds, one run)."""
    runs = cfgmod.pipeline_runs(params, preset)
    extra = {"pst900/random-encoder", "pst900/full/seed1", "pst900/full/seed2"}
    ids = {r.run_id for r in runs}
    assert len(runs) == len(ids) == (30 if preset == "paper" else 33)
    assert (ids & extra) == (set() if preset == "paper" else extra)
    aliases = cfgmod.run_aliases(params, preset)
    assert set(aliases.values()) == {r.run_id for r in runs if r.seed_index == 0}
    assert aliases["pst900/full"] == "pst900/full"


def test_preset_repeats_and_extra_runs_stay_in_their_preset(params):
    assert cfgmod.run_seeds(params, "pst900", "full", "demo") == [3407, 1, 2]
    assert cfgmod.run_seeds(params, "pst900", "full", "paper") == [3407]
    assert cfgmod.run_seeds(params, "mfnet", "full", "demo") == [3407]
    assert cfgmod.seed_count(params, "demo") == 3 and cfgmod.seed_count(params, "paper") == 1
    third = cfgmod.run_aliases(params, "demo", seed_index=2)
    assert third == {"pst900/full": "pst900/full/seed2"}
    cfg = cfgmod.resolve(params, dataset="pst900", run="random-encoder", preset="demo")
    assert cfg.model.checkpoint is None and cfg.model.backbone == "test_hiera_tiny"
    with pytest.raises(cfgmod.ConfigError, match="not defined in preset 'paper'"):
        cfgmod.resolve(params, dataset="pst900", run="random-encoder", preset="paper")


OWN = {"raw": "raw/mine", "classes": "raw/classes.yaml", "runs": ["full", "no-aux"]}


def test_a_dataset_of_your_own_joins_its_runs_in_every_preset(tmp_path):
    def add(d):
        d["datasets"] = {"mine": {**OWN, "set": {"data.crop_size": 96}}}

    params = cfgmod.load_params(write_params(tmp_path, add))
    assert cfgmod.logical_datasets(params) == ("mfnet", "pst900", "fmb", "mine")
    for preset in ("paper", "demo"):
        runs = cfgmod.run_list(params, preset)
        assert "mine" in runs["full"]["datasets"] and "mine" in runs["no-aux"]["datasets"]
        assert "mine" not in runs["rank4"]["datasets"]
        jobs = {c.run_id for c in cfgmod.pipeline_runs(params, preset)}
        assert {"mine/full", "mine/no-aux"} <= jobs
    cfg = cfgmod.resolve(params, dataset="mine", run="no-aux", preset="demo")
    assert cfg.data.dataset == "custom-mine" and not cfg.synthetic  # never a stand-in
    assert cfg.data.crop_size == 96 and cfg.loss.w1 == 0  # its settings, then the run's
    assert cfg.model.backbone == "test_hiera_tiny"  # and the preset's
    with pytest.raises(cfgmod.ConfigError, match="runs on .* not on 'mine'"):
        cfgmod.resolve(params, dataset="mine", run="rank4", preset="demo")


def test_a_dataset_of_your_own_is_checked(tmp_path):
    def unknown_run(d):
        d["datasets"] = {"mine": {**OWN, "runs": ["fulll"]}}

    params = cfgmod.load_params(write_params(tmp_path, unknown_run))
    with pytest.raises(cfgmod.ConfigError, match=r"datasets\.mine\.runs: 'fulll' is not a run"):
        cfgmod.run_list(params, "paper")
    for bad in ({"pst900": OWN}, {"Mine": OWN}, {"mine": {**OWN, "raw": 3}}):
        with pytest.raises(cfgmod.ConfigError, match="datasets"):
            cfgmod.load_params(write_params(tmp_path, lambda d, bad=bad: d.update(datasets=bad)))


def test_identical_runs_are_one_run(tmp_path):
    def add_duplicate(d):
        d["runs"]["w3-100"] = {"datasets": ["mfnet"], "set": {"loss.w3": 100}}  # == mfnet/full

    params = cfgmod.load_params(write_params(tmp_path, add_duplicate))
    assert len(cfgmod.pipeline_runs(params, "paper")) == 30
    assert cfgmod.run_aliases(params, "paper")["mfnet/w3-100"] == "mfnet/full"


def test_seeds_repeat_every_run(tmp_path):
    params = cfgmod.load_params(write_params(tmp_path, lambda d: d.update(seeds=[1, 2])))
    runs = cfgmod.pipeline_runs(params, "paper")
    assert len(runs) == 60
    assert {r.train.seed for r in runs} == {1, 2}
    assert "pst900/full/seed2" in {r.run_id for r in runs}


def test_saved_config_round_trips(params, tmp_path):
    cfg = cfgmod.resolve(params, dataset="pst900", run="ce-s0", preset="demo")
    cfgmod.save_config(cfg, tmp_path / "run.yaml")
    back = cfgmod.load_config(tmp_path / "run.yaml")
    assert back.hash() == cfg.hash() and back.run_id == cfg.run_id
    assert cfgmod.load_config(tmp_path / "run.yaml", ["train.epochs=2"]).train.epochs == 2
    (tmp_path / "junk.yaml").write_text("a: 1\n")
    with pytest.raises(cfgmod.ConfigError, match="not a resolved sartm config"):
        cfgmod.load_config(tmp_path / "junk.yaml")


def test_cli_reports_config_errors_cleanly(tmp_path):
    from click.testing import CliRunner

    from sartm.cli import cli
    from sartm.cli.common import resolve_from_options

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    args = ["model", "summary", "--params", str(tmp_path / "params.yaml")]
    result = CliRunner().invoke(cli, [*args, "--set", "train.epochs=-1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == "Error: run adhoc: train.epochs: -1 is less than the minimum of 1\n"
    cfg = resolve_from_options(
        tmp_path / "params.yaml", "paper", "mfnet", "fmb/head-deeplab", None, ()
    )
    assert cfg.run_id == "fmb/head-deeplab" and cfg.model.aux_head == "deeplab"
