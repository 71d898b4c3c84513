"""Tail-only fine-tune of an RRDBNet: head/tail split, the trunk-feature cache, TailTask and its release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optisr.blind.api import get_model, upscale
from optisr.blind.archs import RRDBNet
from optisr.blind.checkpoints import load_model_file
from optisr.blind.feature_cache import (
    FeatureCacheConfig,
    build_feature_cache,
    feature_batch,
    head_sha256,
    load_feature_cache,
)
from optisr.config import build_config
from optisr.errors import ConfigError
from optisr.io.state_dict import save_model_safetensors
from optisr.train.blind import BlindTrainConfig, TailTask, build_task, train

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "blind" / "tiny.yaml"


def _tiny_net(seed: int = 5, scale: int = 4) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=3, num_grow_ch=4, scale=scale).eval()


@pytest.mark.parametrize("scale", [4, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_tail_on_head_features_equals_the_full_forward(scale, k):
    net = _tiny_net(scale=scale)
    x = torch.rand(2, 3, 12, 8)
    with torch.no_grad():
        full = net(x)
        first, trunk = net.head_features(x, k)
        split = net.tail_forward(first, trunk, k)
    assert first.shape == trunk.shape == (2, 8, 12 * scale // 4, 8 * scale // 4)
    assert split.shape == full.shape == (2, 3, 12 * scale, 8 * scale)
    torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-6)
    if k < 3:  # the head really ran: its output differs from conv_first's
        assert not torch.equal(first, trunk)
    names = net.head_parameter_names(k)
    assert {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("body") else "") for n in names} == {
        "conv_first",
        *(f"body.{i}" for i in range(3 - k)),
    }


def test_head_split_refuses_bad_k():
    net = _tiny_net()
    for k in (0, 4):
        with pytest.raises(ConfigError, match=r"tail_blocks must be in 1\.\.3"):
            net.head_features(torch.rand(1, 3, 4, 4), k)


def _write_teacher_cache(folder: Path, n_shards: int, per_shard: int = 3, complete: bool = True) -> None:
    """A hand-written teacher cache: 8² LR, 32² HR / teacher patches, uint8, ``n_shards`` shards."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for si in range(n_shards):
        name = f"shard_{si:05d}.npz"
        arrays = {
            "hr": rng.integers(0, 256, (per_shard, 32, 32, 3), dtype=np.uint8),
            "lr_clean": rng.integers(0, 256, (per_shard, 8, 8, 3), dtype=np.uint8),
            "lr": rng.integers(0, 256, (per_shard, 8, 8, 3), dtype=np.uint8),
            "teacher": rng.integers(0, 256, (per_shard, 32, 32, 3), dtype=np.uint8),
        }
        np.savez(folder / name, **arrays)
        names.append(name)
    manifest = {
        "config": {"hr_dirs": ["synthetic"], "teacher": "stub", "teacher_input": "clean", "training_data": "test"},
        "shards": names,
        "patches": n_shards * per_shard,
        "complete": complete,
    }
    (folder / "cache.json").write_text(json.dumps(manifest))


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    fc = load_feature_cache(folder)
    return {k: getattr(fc, k) for k in ("first", "trunk", "lr", "hr", "teacher")}


def test_feature_cache_is_resumable_deterministic_and_holds_the_head_output(tmp_path):
    tc = tmp_path / "tc"
    _write_teacher_cache(tc, n_shards=3)  # 9 patches -> feature shards of 4, 4, 1 (the cache is complete)
    cfg = build_config(FeatureCacheConfig, base={"tail_blocks": 2, "shard_size": 4, "threads": 0})
    whole = build_feature_cache(cfg, tc, tmp_path / "whole", net=_tiny_net(), progress=False)
    assert whole["complete"] and whole["patches"] == 9 and len(whole["shards"]) == 3
    assert whole["fixed_degradation"] is True and "no per-step redraw" in whole["note"]
    assert whole["head_sha256"] == head_sha256(_tiny_net(), 2) != head_sha256(_tiny_net(seed=6), 2)

    ticks = iter([0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 10.0])  # the limit trips before the second shard
    part_cfg = build_config(FeatureCacheConfig, base={"tail_blocks": 2, "shard_size": 4, "time_limit_s": 1.0})
    part = build_feature_cache(
        part_cfg, tc, tmp_path / "resumed", net=_tiny_net(), progress=False, clock=lambda: next(ticks)
    )
    assert not part["complete"] and list(part["shards"]) == ["feat_00000.npz"]
    resumed = build_feature_cache(cfg, tc, tmp_path / "resumed", net=_tiny_net(), progress=False)
    assert resumed["complete"] and resumed["patches"] == 9
    a, b = _arrays(tmp_path / "whole"), _arrays(tmp_path / "resumed")
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert a["first"].dtype == np.float16 and a["first"].shape == (9, 8, 8, 8)

    lr = torch.from_numpy(a["lr"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        first, trunk = _tiny_net().head_features(lr, 2)
    for cached, ref in ((a["first"], first), (a["trunk"], trunk)):  # float16 rounding of the float32 head
        torch.testing.assert_close(torch.from_numpy(cached).float(), ref, rtol=1e-3, atol=1e-3)

    with pytest.raises(ConfigError, match="another head"):  # another K into the same folder
        build_feature_cache(
            build_config(FeatureCacheConfig, base={"tail_blocks": 1, "shard_size": 4}),
            tc, tmp_path / "whole", net=_tiny_net(), progress=False,
        )  # fmt: skip
    _write_teacher_cache(tc, n_shards=3, complete=True)  # same seed: same patches -> resumable no-op
    assert build_feature_cache(cfg, tc, tmp_path / "whole", net=_tiny_net(), progress=False)["patches"] == 9


def test_feature_cache_of_a_growing_teacher_cache_writes_whole_shards_only(tmp_path):
    tc = tmp_path / "tc"
    _write_teacher_cache(tc, n_shards=3, complete=False)  # 9 patches, still growing
    cfg = build_config(FeatureCacheConfig, base={"tail_blocks": 1, "shard_size": 4})
    m = build_feature_cache(cfg, tc, tmp_path / "f", net=_tiny_net(), progress=False)
    assert m["patches"] == 8 and not m["complete"]
    batch = feature_batch(load_feature_cache(tmp_path / "f"), 3, 4, seed=0, step=7)
    again = feature_batch(load_feature_cache(tmp_path / "f"), 3, 4, seed=0, step=7)
    assert batch["first"].shape == batch["trunk"].shape == (3, 8, 4, 4)
    assert batch["gt"].shape == batch["teacher"].shape == (3, 3, 16, 16)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def _tail_cfg(tmp_path: Path, *extra: str) -> BlindTrainConfig:
    return build_config(
        BlindTrainConfig,
        TINY,
        [
            "network_g.num_block=3",
            f"network_g.pretrained={tmp_path / 'pre.safetensors'}",
            "network_g.tail_blocks=1",
            f"distill.feature_cache={tmp_path / 'feat'}",
            "distill.redraw=false",
            "distill.teacher_weight=0.5",
            "datasets.train.gt_size=16",
            "datasets.val.dataroot_gt=null",
            "datasets.val.dataroot_lq=null",
            "train.best_metric=null",
            "train.total_steps=2",
            "train.val_every=0",
            "train.save_every=2",
            *extra,
        ],
    )


@pytest.fixture()
def tail_setup(tmp_path) -> Path:
    save_model_safetensors(_tiny_net(), tmp_path / "pre.safetensors")
    _write_teacher_cache(tmp_path / "tc", n_shards=2)
    cfg = build_config(FeatureCacheConfig, base={"tail_blocks": 1, "shard_size": 3})
    build_feature_cache(cfg, tmp_path / "tc", tmp_path / "feat", net=_tiny_net(), progress=False)
    return tmp_path


def test_tail_training_changes_only_the_tail_and_the_release_loads(tail_setup):
    d = tail_setup
    cfg = _tail_cfg(d)
    assert isinstance(build_task(cfg), TailTask)
    result = train(cfg, save_dir=d / "run", progress=False, device="cpu")
    assert result.step == 2
    before = _tiny_net().state_dict()
    release = d / "run" / "last.safetensors"
    loaded = load_model_file(release)
    after = loaded.model.state_dict()
    assert isinstance(loaded.model, RRDBNet) and loaded.model.num_block == 3
    head = set(loaded.model.head_parameter_names(1))
    assert head and all(torch.equal(after[n], before[n]) for n in head)  # the frozen head, bit-exact (EMA too)
    tail = [n for n in after if n not in head]
    assert any(not torch.equal(after[n], before[n]) for n in tail)  # trained
    assert all(n.startswith(("body.2.", "conv_body", "conv_up", "conv_hr", "conv_last")) for n in tail)
    meta = loaded.metadata
    assert meta["tail_blocks"] == "1" and meta["loss_mode"] == "otsr" and "fixed" in meta["feature_cache_note"]
    assert meta["head_sha256"] == head_sha256(_tiny_net(), 1)

    model, scale = get_model(str(release))
    assert scale == 4 and isinstance(model, RRDBNet)
    img = (np.random.default_rng(0).random((6, 5, 3)) * 255).astype(np.uint8)
    out = upscale(img, str(release), device="cpu", prefilter="none")
    assert out.shape == (24, 20, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("distill.redraw=true", "distill.redraw"),
        ("network_g.tail_blocks=2", "tail_blocks 1, but network_g.tail_blocks is 2"),
        ("distill.feature_cache=null", "distill.feature_cache"),
        ("distill.cache_dir=somewhere", "set cache_dir and teacher to null"),
    ],
)
def test_tail_config_errors_name_the_key(tail_setup, override, match):
    with pytest.raises(ConfigError, match=match):
        build_task(_tail_cfg(tail_setup, override))


def test_feature_cache_of_another_head_is_refused(tail_setup):
    save_model_safetensors(_tiny_net(seed=9), tail_setup / "pre.safetensors")
    with pytest.raises(ConfigError, match="another head"):
        build_task(_tail_cfg(tail_setup))


def _tool_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_feature_cache", REPO / "tools" / "build_feature_cache.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_tool_builds_from_a_weights_file_and_errors_in_one_line(tail_setup, capsys):
    d = tail_setup
    main = _tool_main()
    args = ["-t", str(d / "tc"), "-o", str(d / "tool"), f"model={d / 'pre.safetensors'}", "tail_blocks=2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["patches"] == 6 and summary["complete"] and summary["head_sha256"] == head_sha256(_tiny_net(), 2)
    assert main([*args[:-1], "tail_blocks=5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: tail_blocks must be in 1..3 (the RRDBs of this net); got 5"]
