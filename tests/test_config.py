"""optisr.config: YAML loading, CLI overrides, typed dataclasses with clear errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from optisr.errors import ConfigError, InputFileError
from optisr.config import apply_overrides, build_config, from_dict, load_yaml_config, to_dict
from optisr.cli.train import add_common_train_args, collect_overrides
from optisr.train.config import TrainConfig


@dataclass
class ModelCfg:
    widths: list[int] = field(default_factory=lambda: [8, 16])
    kind: Literal["rrdb", "unet"] = "rrdb"


@dataclass
class DataCfg:
    root: str
    scales: list[int] = field(default_factory=lambda: [4])
    crop: tuple[int, int] = (64, 64)
    mean: Optional[float] = None


@dataclass
class RunCfg:
    name: str
    model: ModelCfg = field(default_factory=ModelCfg)
    datasets: dict[str, DataCfg] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(total_steps=10))
    flip: bool = True


BASE = {
    "name": "run1",
    "model": {"widths": [16, 32], "kind": "unet"},
    "datasets": {"train": {"root": "/data/div2k", "scales": [4]}, "val": {"root": "/data/set5"}},
    "train": {"total_steps": 100, "optim": {"type": "AdamW", "lr": 1e-4}, "scheduler": {"type": "cosine"}},
}


def test_load_yaml_and_from_dict(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = from_dict(RunCfg, load_yaml_config(path))
    assert cfg.model.widths == [16, 32] and cfg.model.kind == "unet"
    assert cfg.datasets["train"].crop == (64, 64) and cfg.datasets["val"].scales == [4]
    assert cfg.train.optim.type == "AdamW" and cfg.train.optim.betas == (0.9, 0.99)
    d = to_dict(cfg)
    assert d["datasets"]["train"]["crop"] == [64, 64]  # tuples saved as lists
    assert from_dict(RunCfg, yaml.safe_load(yaml.safe_dump(d))) == cfg  # round trip


def test_overrides():
    out = apply_overrides(
        BASE,
        ["train.optim.lr=2e-4", "model.widths=[16,32,64]", "datasets.train.scales=[4,8]", "flip=false"],
        schema=RunCfg,
    )
    assert BASE["train"]["optim"]["lr"] == 1e-4  # input untouched
    cfg = from_dict(RunCfg, out)
    assert cfg.train.optim.lr == pytest.approx(2e-4)  # "2e-4" is a YAML 1.1 string: float fields accept it
    assert cfg.model.widths == [16, 32, 64] and cfg.datasets["train"].scales == [4, 8] and cfg.flip is False
    # a schema field absent from the YAML can be set; dict[str, X] sections take new keys
    out = apply_overrides(BASE, ["train.ema_decay=0.999", "datasets.test.root=/x"], schema=RunCfg)
    assert from_dict(RunCfg, out).train.ema_decay == 0.999


def test_override_unknown_key_names_key_and_close_matches():
    with pytest.raises(ConfigError, match=r"train\.optim\.lrr: unknown key; did you mean 'lr'"):
        apply_overrides(BASE, ["train.optim.lrr=1"], schema=RunCfg)
    with pytest.raises(ConfigError, match=r"modle: unknown key; did you mean 'model'"):
        apply_overrides(BASE, ["modle.widths=[1]"])  # without a schema: keys of the dict
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(BASE, ["train.optim.lr"])
    with pytest.raises(ConfigError, match=r"name: is a str, not a section"):
        apply_overrides(BASE, ["name.x=1"])


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"train": {"total_steps": 10, "optim": {"lr": "fast"}}}, r"^train\.optim\.lr: expected float, got 'fast'"),
        ({"train": {"total_steps": 2.5}}, r"^train\.total_steps: expected int"),
        ({"train": {"total_steps": True}}, r"^train\.total_steps: expected int"),
        ({"train": {}}, r"^train\.total_steps: missing required key"),
        ({"name": None}, r"^name: expected str, got null"),
        ({"flip": "yes"}, r"^flip: expected bool"),
        ({"model": {"kind": "esrgan"}}, r"^model\.kind: expected one of 'rrdb', 'unet', got 'esrgan'"),
        ({"model": {"widths": [8, "x"]}}, r"^model\.widths\[1\]: expected int"),
        ({"model": {"depth": 3}}, r"^model\.depth: unknown key"),
        ({"datasets": {"train": {"root": "a", "crop": [1, 2, 3]}}}, r"^datasets\.train\.crop: expected a list of 2 items"),
        ({"datasets": {"train": {"root": "a", "mean": "x"}}}, r"^datasets\.train\.mean: expected float"),
        ({"datasets": {"train": {"scales": [2]}}}, r"^datasets\.train\.root: missing required key"),
        ({"train": {"total_steps": 5, "optim": {"lr": -1}}}, r"^train\.optim: lr must be > 0"),
        ({"train": {"total_steps": 5, "best_mode": "up"}}, r"^train\.best_mode: expected one of 'max', 'min'"),
        ({"model": [1]}, r"^model: expected a mapping"),
    ],
)
def test_validation_errors_name_the_dotted_key(patch, message):
    d = {**BASE, **patch}
    with pytest.raises(ConfigError, match=message):
        from_dict(RunCfg, d)


def test_optional_and_empty_section():
    cfg = from_dict(RunCfg, {"name": "a", "model": None, "datasets": {"v": {"root": "r", "mean": 3}}})
    assert cfg.model == ModelCfg() and cfg.datasets["v"].mean == 3.0


def test_load_yaml_errors(tmp_path):
    with pytest.raises(InputFileError, match="missing.yml"):
        load_yaml_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml_config(bad)


def test_cli_args_and_build_config(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(BASE))
    parser = argparse.ArgumentParser()
    add_common_train_args(parser)
    args = parser.parse_args(
        ["--config", str(path), "--opt", "train.optim.lr=3e-4", "--no-progress", "--resume", "model.kind=rrdb", "flip=false"]
    )
    overrides = collect_overrides(args)
    assert overrides == ["train.optim.lr=3e-4", "model.kind=rrdb", "flip=false"] and args.resume is True
    cfg = build_config(RunCfg, args.config, overrides)
    assert cfg.train.optim.lr == 3e-4 and cfg.model.kind == "rrdb" and not cfg.flip and args.no_progress
    args = parser.parse_args(["--resume", "run/state_00000010.pt", "--device", "cpu"])
    assert collect_overrides(args) == [] and args.resume == "run/state_00000010.pt"
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        collect_overrides(parser.parse_args(["oops"]))
