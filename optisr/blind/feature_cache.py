"""A cache of RRDBNet trunk features, for fine-tuning only the tail of a frozen RRDB-23 on a CPU.

Built once from a teacher cache (:mod:`optisr.blind.teacher_cache`) by :func:`build_feature_cache`
(``python tools/build_feature_cache.py -t runs/teacher_cache -o runs/feature_cache_k2 tail_blocks=2``):
the frozen head of the generator (``conv_first`` + ``body[0 : num_block - K]``,
:meth:`~optisr.blind.archs.RRDBNet.head_features`) runs once on each cached degraded LR patch, and
the two 64-channel LR-resolution maps the tail needs are stored with the patch's HR and teacher
output::

    cache_dir/features.json       manifest: K, the head's SHA-256, source weights, patch count, shards
    cache_dir/feat_00000.npz      "first", "trunk": (n, C, S, S) float16 (conv_first output, head output),
                                  "lr": (n, S, S, 3), "hr", "teacher": (n, S·s, S·s, 3) uint8 RGB

Feature shard ``i`` holds patches ``[i·n, (i+1)·n)`` of the teacher cache in its shard order (a
growing teacher cache only appends patches); only whole shards are written until the teacher cache
is complete. Each shard's manifest entry records a SHA-256 of its LR bytes, so a resumed build on a
changed teacher cache fails instead of mixing patches. Writes are atomic; the forward runs in
float32, so a resumed build writes exactly the shards of an uninterrupted one (same torch, same CPU).

**Caveat.** The features are a function of one fixed LR draw per patch: the degradation (blur,
noise, JPEG) of every patch is frozen when the teacher cache was built, with no per-step redraw of
noise or JPEG (``distill.redraw`` must be off), and no flip / transpose augmentation either, because
the network is not equivariant to them. Crops of the cached maps also see context from outside the
crop (the head ran on the whole patch), unlike a forward on the cropped LR alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optisr.blind.archs import RRDBNet
from optisr.errors import ConfigError, InputFileError

__all__ = [
    "FeatureCache",
    "FeatureCacheConfig",
    "build_feature_cache",
    "feature_batch",
    "head_sha256",
    "load_feature_cache",
]

MANIFEST = "features.json"
FORMAT = 1
FIXED_DEGRADATION_NOTE = (
    "features computed once per patch from the teacher cache's degraded LR: the LR degradation of each "
    "patch is fixed (no per-step redraw of noise or JPEG, no flip/transpose augmentation)"
)


@dataclass
class FeatureCacheConfig:
    """What :func:`build_feature_cache` makes (the keys of ``tools/build_feature_cache.py``)."""

    model: str = "realsr-df2k-x4"  # registry name or weights file of the RRDBNet whose head runs
    tail_blocks: int = 2  # K: the last K RRDBs (and everything after them) are trained
    shard_size: int = 16  # patches per feature shard
    time_limit_s: float = 0.0  # stop cleanly between shards after this many seconds (0: none)
    threads: int = 1  # torch CPU threads

    def __post_init__(self) -> None:
        if self.tail_blocks < 1 or self.shard_size < 1:
            raise ValueError("tail_blocks and shard_size must be >= 1")
        if self.time_limit_s < 0:
            raise ValueError(f"time_limit_s must be >= 0, got {self.time_limit_s}")


def head_sha256(net: RRDBNet, tail_blocks: int) -> str:
    """SHA-256 (hex) of the head's float32 parameters (names and bytes, in ``state_dict`` order):
    what the cached features depend on, and what a tail fine-tune must start from."""
    names = set(net.head_parameter_names(tail_blocks))
    h = hashlib.sha256()
    for name, p in net.state_dict().items():
        if name in names:
            h.update(name.encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _head_features_f16(net: RRDBNet, lr: np.ndarray, tail_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """``(first, trunk)`` float16 ``(n, C, S, S)`` of uint8 ``(n, S, S, 3)`` LR patches (one at a time, float32)."""
    firsts, trunks = [], []
    with torch.no_grad():
        for x in lr:
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32) / 255.0)[None]
            first, trunk = net.head_features(t, tail_blocks)
            firsts.append(first[0].to(torch.float16).numpy())
            trunks.append(trunk[0].to(torch.float16).numpy())
    return np.stack(firsts), np.stack(trunks)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: unreadable ({exc})") from exc


def _write_json(path: Path, data: dict) -> None:
    from optisr.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def build_feature_cache(
    cfg: FeatureCacheConfig,
    teacher_cache_dir: str | Path,
    out_dir: str | Path,
    *,
    net: RRDBNet | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Build (or resume) the feature cache of ``teacher_cache_dir`` in ``out_dir``.

    Args:
        cfg: the recipe (``tail_blocks`` K, shard size, time limit).
        teacher_cache_dir: a teacher cache; the patches of its complete shards are used.
        out_dir: the feature cache folder (created).
        net: a loaded RRDBNet; None: ``load_model(cfg.model)``.
        progress: tqdm bar on stderr.
        clock: seconds, for ``time_limit_s`` (injectable for tests).
    Returns:
        the manifest written to ``features.json`` (``shards``, ``patches``, ``head_seconds``, ``complete``).
    Raises:
        ConfigError: ``cfg.model`` is not an RRDBNet, or ``out_dir`` holds features of another head,
            K or teacher cache content.
        InputFileError: no readable teacher cache.
    """
    from tqdm import tqdm

    from optisr.blind.teacher_cache import load_teacher_cache
    from optisr.io.atomic import atomic_path

    patches = load_teacher_cache(teacher_cache_dir)
    if net is None:
        from optisr.blind.registry import load_model

        loaded = load_model(cfg.model)
        if not isinstance(loaded.model, RRDBNet):
            raise ConfigError(f"model: {cfg.model} is a {loaded.arch}; feature caches are for RRDBNet")
        net = loaded.model
    net = net.eval()
    k = cfg.tail_blocks
    meta = {
        "format": FORMAT,
        "tail_blocks": k,
        "head_sha256": head_sha256(net, k),  # first: checks 1 <= k <= num_block
        "head_blocks": net.num_block - k,
        "hyperparameters": net.hyperparameters(),
        "shard_size": cfg.shard_size,
    }
    out = Path(out_dir)
    mpath = out / MANIFEST
    manifest: dict[str, Any] = {
        **meta,
        "model": cfg.model,
        "teacher_cache": str(Path(teacher_cache_dir).resolve()),
        "teacher_cache_manifest": patches.manifest,
        "lr_source": "lr (the teacher cache's degraded LR draw)",
        "fixed_degradation": True,
        "note": FIXED_DEGRADATION_NOTE,
        "shards": {},
        "patches": 0,
        "head_seconds": 0.0,
        "complete": False,
    }
    if mpath.is_file():
        old = _read_manifest(mpath)
        if {key: old.get(key) for key in meta} != meta:
            raise ConfigError(f"{out}: holds features of another head, K or shard size; use an empty folder")
        manifest.update({key: old[key] for key in ("shards", "patches", "head_seconds") if key in old})
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    n, total = cfg.shard_size, len(patches)
    teacher_complete = bool(patches.manifest.get("complete"))
    n_shards = total // n + (1 if teacher_complete and total % n else 0)
    bar = tqdm(total=n_shards, desc="feature cache", unit="shard", disable=not progress, file=sys.stderr)
    start = clock()
    try:
        for si in range(n_shards):
            name = f"feat_{si:05d}.npz"
            sl = slice(si * n, min((si + 1) * n, total))
            lr = patches.lr[sl]
            digest = hashlib.sha256(np.ascontiguousarray(lr).tobytes()).hexdigest()
            entry = manifest["shards"].get(name)
            if entry is not None:
                if entry["lr_sha256"] != digest:
                    raise ConfigError(
                        f"{out}: {name} was built from other LR patches than {teacher_cache_dir} now holds; "
                        "use an empty folder"
                    )
                if (out / name).is_file():
                    bar.update(1)
                    continue
            if cfg.time_limit_s and clock() - start > cfg.time_limit_s:
                break
            t0 = clock()
            first, trunk = _head_features_f16(net, lr, k)
            manifest["head_seconds"] += clock() - t0
            with atomic_path(out / name) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, first=first, trunk=trunk, lr=lr, hr=patches.hr[sl], teacher=patches.teacher[sl])
            if entry is None:
                manifest["patches"] += len(lr)
            manifest["shards"] = {**manifest["shards"], name: {"patches": len(lr), "lr_sha256": digest}}
            _write_json(mpath, manifest)
            bar.set_postfix(patches=manifest["patches"], head_s=round(manifest["head_seconds"]), refresh=False)
            bar.update(1)
    finally:
        bar.close()
    manifest["complete"] = teacher_complete and len(manifest["shards"]) == n_shards
    _write_json(mpath, manifest)
    return manifest


# --------------------------------------------------------------------------------------- reading


@dataclass
class FeatureCache:
    """A loaded feature cache: ``first``, ``trunk`` float16 ``(N, C, S, S)``; ``lr`` uint8 ``(N, S, S, 3)``;
    ``hr``, ``teacher`` uint8 ``(N, S·s, S·s, 3)``; the manifest."""

    first: np.ndarray
    trunk: np.ndarray
    lr: np.ndarray
    hr: np.ndarray
    teacher: np.ndarray
    manifest: dict

    @property
    def tail_blocks(self) -> int:
        return int(self.manifest["tail_blocks"])

    @property
    def scale(self) -> int:
        return self.hr.shape[1] // self.lr.shape[1]

    def __len__(self) -> int:
        return self.hr.shape[0]

    def describe(self) -> str:
        """One line for model metadata."""
        c = self.manifest.get("teacher_cache_manifest", {}).get("config", {})
        return (
            f"feature cache (K={self.tail_blocks}): {len(self)} patches of {self.lr.shape[1]}² LR from "
            f"{', '.join(c.get('hr_dirs', []))} (teacher {c.get('teacher')} on the {c.get('teacher_input')} LR; "
            f"fixed LR degradation per patch); {c.get('training_data', '')}"
        ).strip("; ")


def load_feature_cache(cache_dir: str | Path) -> FeatureCache:
    """Read every shard listed in ``cache_dir/features.json`` (in shard order).

    Raises:
        InputFileError: no feature cache there, no shard yet, or a shard missing / unreadable / of another shape.
    """
    folder = Path(cache_dir)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise InputFileError(f"{folder}: no feature cache here ({MANIFEST} missing)")
    manifest = _read_manifest(mpath)
    from optisr.blind.teacher_cache import load_shards

    keys = ("hr", "first", "trunk", "lr", "teacher")
    arrays = load_shards(folder, sorted(manifest.get("shards", {})), keys, "feature cache")
    return FeatureCache(**arrays, manifest=manifest)


def feature_batch(
    cache: FeatureCache, batch_size: int, lq_size: int, seed: int, step: int, rank: int = 0
) -> dict[str, torch.Tensor]:
    """The batch of ``step``: random aligned crops of cached feature maps and HR / teacher patches.

    A pure function of ``(seed, step, rank)`` and the cache; no flips (see the module caveat).

    Returns:
        ``{"first", "trunk": (B, C, q, q) float32, "gt", "teacher": (B, 3, q·s, q·s) float32 in [0, 1]}``,
        ``q = lq_size``.
    Raises:
        ConfigError: ``lq_size`` larger than the cached patches.
    """
    from optisr.rng import step_rng

    s, size = cache.scale, cache.lr.shape[1]
    if not 1 <= lq_size <= size:
        raise ConfigError(f"LR crop {lq_size} must be in 1..{size} (the cached LR patch side)")
    out: dict[str, list[np.ndarray]] = {"first": [], "trunk": [], "gt": [], "teacher": []}
    for rng in step_rng(seed, step, rank).spawn(batch_size):
        i = int(rng.integers(len(cache)))
        top, left = (int(v) for v in rng.integers(size - lq_size + 1, size=2))
        ls = (slice(top, top + lq_size), slice(left, left + lq_size))
        hs = (slice(top * s, (top + lq_size) * s), slice(left * s, (left + lq_size) * s))
        out["first"].append(cache.first[i][:, ls[0], ls[1]])
        out["trunk"].append(cache.trunk[i][:, ls[0], ls[1]])
        out["gt"].append(cache.hr[i][hs].transpose(2, 0, 1))
        out["teacher"].append(cache.teacher[i][hs].transpose(2, 0, 1))

    def t(xs: list[np.ndarray], div: float) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.stack(xs).astype(np.float32) / np.float32(div)))

    return {
        "first": t(out["first"], 1.0),
        "trunk": t(out["trunk"], 1.0),
        "gt": t(out["gt"], 255.0),
        "teacher": t(out["teacher"], 255.0),
    }
