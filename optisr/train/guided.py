"""``optisr train guided``: train the learned graph-regularisation model.

    optisr train guided --config configs/guided/default.yaml --save-dir runs/guided
    optisr train guided -c configs/guided/default.yaml --resume train.total_steps=8000
    optisr train guided -c configs/guided/tiny.yaml --dataset rgbdd --data-dir ../shared/data/depth_rgbdd_test405

The config has BasicSR-shaped sections (``name``, ``model``, ``datasets: {train, val}``,
``solver``, ``train``, ``path``); any key can be overridden on the command line
(``train.optim.lr=2e-4``). The loss (``loss.kind``: rmse by default, l1 as LGR, or mse) compares
the solver output with the HR depth over valid pixels, in units of each sample's LR standard
deviation (scale-free, so depth in mm and in disparity mix).
Validation: normalised RMSE on procedural scenes (never on benchmark data) with the operator of
the evaluation protocol, reported next to the untrained colour graph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optisr.errors import ConfigError
from optisr.guided.graph_weights import color_weights
from optisr.guided.model import GraphSRConfig, GraphSRModel, save_guided_model
from optisr.guided.training_data import (
    BatchPrefetcher,
    DataSourceConfig,
    TrainDataConfig,
    make_training_batch,
    source_std,
)
from optisr.train.config import PathConfig, TrainConfig
from optisr.train.loop import FitResult
from optisr.train.run import run_training

__all__ = [
    "CONFIG_CLASS",
    "GuidedDatasetsConfig",
    "GuidedTask",
    "GuidedTrainConfig",
    "GuidedValConfig",
    "LossConfig",
    "SolverConfig",
    "add_dataset",
    "edge_bce_loss",
    "kkt_loss",
    "masked_loss",
    "rule_lams",
    "train",
    "validation_scenes",
    "VAL_GUIDE_CONDITIONS",
]


VAL_GUIDE_CONDITIONS = ("clean", "dim")


@dataclass
class GuidedValConfig:
    """Validation on procedural scenes (``scenes`` of ``size``², seeds from ``seed``).

    ``guide_conditions``: the guides each scene is validated with: ``clean`` (as rendered; its
    metrics are ``nrmse_x4``...) and ``dim`` (the fixed :data:`optisr.degrade.low_light.DIM_INDOOR`
    re-exposure, drawn from a generator seeded by ``(seed + i, 1)`` for scene i; metrics
    ``nrmse_x4_dim``, ``nrmse_dim``, ``color_nrmse_dim``, ``vs_color_dim``). ``clean`` must be
    listed: its ``nrmse`` is the headline metric.

    ``noise``: Gaussian noise added to each validation LR, σ as a fraction of its
    :func:`~optisr.guided.fidelity.source_spread` (0 = clean), drawn from a generator seeded by
    ``(seed + i, scale)``; soft-mode models are validated at :func:`~optisr.guided.fidelity.rule_lambda`
    of that σ (as they are trained with ``loss.soft_lam: rule``).
    """

    scenes: int = 6
    size: int = 192
    seed: int = 900_000
    scales: list[int] = field(default_factory=lambda: [4, 8, 16])
    operator: str = "bicubic"
    guide_conditions: list[str] = field(default_factory=lambda: ["clean"])
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise < 1.0:
            raise ConfigError(f"datasets.val.noise must be in [0, 1) (σ / the LR's spread), got {self.noise}")
        conds = self.guide_conditions
        if any(c not in VAL_GUIDE_CONDITIONS for c in conds) or "clean" not in conds or len(set(conds)) != len(conds):
            raise ConfigError(
                f"datasets.val.guide_conditions must be distinct values of {', '.join(VAL_GUIDE_CONDITIONS)} "
                f"including clean, got {self.guide_conditions}"
            )


@dataclass
class GuidedDatasetsConfig:
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: GuidedValConfig = field(default_factory=GuidedValConfig)


@dataclass
class SolverConfig:
    """CG settings of the layer during training (validation and inference use ``val_tol``).

    ``precond``: the CG preconditioner of the forward and the implicit backward solves and of
    validation, ``jacobi`` (default) or ``multigrid`` (:mod:`optisr.solvers.multigrid`; 4–8× fewer
    iterations; measured per training step in the README, *Speed*).
    """

    tol: float = 1e-3
    max_iter: int = 400
    val_tol: float = 1e-4
    val_max_iter: int = 2000
    precond: str = "jacobi"

    def __post_init__(self) -> None:
        from optisr.solvers.graph import check_precond

        check_precond(self.precond, "solver.precond")


@dataclass
class LossConfig:
    """What the model is trained against.

    End-to-end (through the graph solve, two CG solves per step): ``kind`` = ``l1`` (LGR's
    masked L1), ``mse``, or ``rmse`` (per-sample RMSE, the benchmark metric: L1 tolerates the rare
    large overshoots of exact mode that RMSE punishes). All in units of each sample's LR standard
    deviation.

    Direct edge supervision (no solver in the loop): ``kind = "edge_bce"``. Each edge's predicted
    affinity ``exp(−E)`` (:meth:`GraphSRModel.edge_energy`) is compared with the ground-truth
    depth's slope-invariant ``a* = exp(−J²/depth_mu²)`` (J the step across the edge minus the local
    slope, D scaled to 0–255 per sample, :func:`optisr.guided.graph_weights.depth_jump_affinity`;
    ``target: plain`` uses ``exp(−ΔD²/depth_mu²)`` of :func:`~optisr.guided.graph_weights.depth_affinity`,
    the oracle's, which also cuts every steep slope) by a binary cross-entropy on the cut
    probability ``1 − a``: ``pos_weight·(1 − a*)·(−log(1 − e^{−E})) + a*·E``, averaged over the
    valid edges of each sample. ``pos_weight`` > 1 makes a missed depth edge (which blurs the
    solution across it) cost more than a spurious one (which the exact constraint mostly absorbs).

    Direct optimality (no solver either): ``kind = "kkt"``. The exact layer returns the ground
    truth x* exactly when x* satisfies its optimality condition ``Π L(w) x* = 0`` (Π the projection
    onto null(D): the constraint's multipliers absorb the rest). The loss is the per-sample RMS of
    the Jacobi-scaled residual ``Π (L(w) x* / deg(w))`` in units of x*'s standard deviation: for each
    pixel, how far x* is from the weighted mean of its neighbours, which only cutting the edges
    across depth jumps can make small. It needs no edge labels and is invariant to a common
    scaling of the weights. Measured on 6 procedural validation scenes it ranks weight maps as the
    solver does (oracle 0.007, depth-jump target 0.011, colour graph 0.078, uniform 0.146 at ×4).

    Distillation (no solver either): ``kind = "distill"``. A frozen ``teacher`` guided model
    (``default``, a shipped name such as ``unet-v1``, or a ``.safetensors`` path) computes its edge energies on the
    same batch; the student's affinities are trained towards the teacher's ``exp(−E_t)`` with the
    same cross-entropy as ``edge_bce`` (with ``pos_weight`` = 1 its minimum is E = E_t), over every
    lattice edge. This is how a cheaper network (issue 14) learns the shipped model's weights: the
    teacher's end-to-end training is inherited without a solve per step.

    ``distill_weight`` > 0 with an end-to-end ``kind`` adds that multiple of the distillation
    loss (against ``teacher``) to the end-to-end loss: an anchor that keeps the edge energies near
    the teacher's where the solution error alone would let them drift (an RMSE-only fine-tune of
    the distilled edge network learned to weaken every edge near a depth step).

    ``soft_lam`` (``model.mode: soft`` only): ``learned`` (one λ, a parameter of the model) or
    ``rule``: each sample's λ is :func:`~optisr.guided.fidelity.rule_lambda` of its true noise
    (the RMS of the source minus the operator applied to the target, finite pixels), the closed-form
    λ that ``fidelity="auto"`` starts its GCV search from. Sources of noisy training need no
    learned λ then: the network learns the edges for the λ inference will use.
    """

    kind: str = "rmse"  # l1 | mse | rmse (end-to-end) | edge_bce | kkt | distill (direct)
    target: str = "jump"
    depth_mu: float = 10.0
    pos_weight: float = 4.0
    teacher: str = "default"
    distill_weight: float = 0.0
    soft_lam: str = "learned"

    def __post_init__(self) -> None:
        if self.soft_lam not in ("learned", "rule"):
            raise ConfigError(f"loss.soft_lam must be learned or rule, got {self.soft_lam!r}")
        if self.kind not in ("l1", "mse", "rmse", "edge_bce", "kkt", "distill"):
            raise ConfigError(f"loss.kind must be l1, mse, rmse, edge_bce, kkt or distill, got {self.kind!r}")
        if self.target not in ("jump", "plain"):
            raise ConfigError(f"loss.target must be jump or plain, got {self.target!r}")
        if self.distill_weight < 0 or (self.distill_weight and self.direct):
            raise ConfigError(
                f"loss.distill_weight must be >= 0 and only with an end-to-end loss.kind, got {self.distill_weight}"
            )
        if self.depth_mu <= 0 or self.pos_weight <= 0:
            raise ConfigError(f"loss.depth_mu and loss.pos_weight must be > 0, got {self.depth_mu}, {self.pos_weight}")

    @property
    def direct(self) -> bool:
        """True for direct supervision (no solve in the training step)."""
        return self.kind in ("edge_bce", "kkt", "distill")


def kkt_loss(weights: torch.Tensor, x: torch.Tensor, op: Any) -> torch.Tensor:
    """Optimality residual of ``x`` under the exact layer with ``weights`` (see :class:`LossConfig`).

    Args:
        weights: (B, 2, H, W) edge weights (> 0 where edges exist).
        x: (B, 1, H, W) the ground-truth HR depth (holes filled).
        op: the :class:`~optisr.ops.operators.DownsampleOperator` of the batch.
    Returns:
        0-d mean over samples of ``RMS(Π(L(w)x / deg(w))) / std(x)``.
    """
    from optisr.ops.lattice import degree, laplacian_apply

    r = laplacian_apply(weights, x) / degree(weights).clamp_min(1e-12)
    z = op.project_null(r)
    std = x.flatten(1).std(dim=1) + 1e-12
    return (z.flatten(1).pow(2).mean(1).add(1e-20).sqrt() / std).mean()


def edge_bce_loss(
    energy: torch.Tensor, affinity: torch.Tensor, edge_valid: torch.Tensor, pos_weight: float
) -> torch.Tensor:
    """Direct edge-supervision loss (see :class:`LossConfig`): mean over samples of the mean over valid edges.

    Args:
        energy: (B, 2, H, W) predicted edge energies E ≥ 0.
        affinity: (B, 2, H, W) target affinities a* in [0, 1].
        edge_valid: (B, 2, H, W) bool, the edges that count.
    """
    e = energy.clamp_min(1e-4)  # −log(1 − e^{−E}) is infinite at E = 0; 1e-4 caps it at ≈ 9.2
    cut = -torch.log(-torch.expm1(-e))
    per_edge = pos_weight * (1.0 - affinity) * cut + affinity * e
    w = edge_valid.to(energy.dtype)
    return ((per_edge * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)).mean()


@dataclass
class GuidedTrainConfig:
    """The whole ``optisr train guided`` config."""

    name: str = "guided"
    model: GraphSRConfig = field(default_factory=GraphSRConfig)
    datasets: GuidedDatasetsConfig = field(default_factory=GuidedDatasetsConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(total_steps=1000))
    path: PathConfig = field(default_factory=lambda: PathConfig("runs/guided"))
    threads: int = 0
    training_data: str | None = None
    init_weights: str | None = None  # a guided .safetensors release to start from (same architecture;
    #                                      model.feature_stride may differ)


def _describe_training_data(cfg: GuidedTrainConfig) -> str:
    if cfg.training_data:
        return cfg.training_data
    parts = [f"distilled from the guided model '{cfg.loss.teacher}' on:"] if cfg.loss.kind == "distill" else []
    for s in cfg.datasets.train.sources:
        if s.name == "synthetic":
            parts.append(f"optisr procedural RGB-D scenes (weight {s.weight:g})")
        else:
            parts.append(f"{s.name} from {Path(s.data_dir).name} (weight {s.weight:g})")
    return "; ".join(parts)


def masked_loss(
    kind: str, x: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Masked error of (B,1,H,W) ``x`` vs ``target`` in units of ``scale`` (B,1,1,1): l1 | mse | rmse."""
    err = (x - target) / scale
    w = valid.to(x.dtype)
    if kind == "l1":
        return (err.abs() * w).sum() / w.sum().clamp_min(1.0)
    per = (err.pow(2) * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)
    return per.mean() if kind == "mse" else (per + 1e-12).sqrt().mean()


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def validation_scenes(v: GuidedValConfig, condition: str = "clean") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The procedural validation scenes: (guide (1, 3, H, W) float32 in [0, 1], depth (1, 1, H, W) float32 mm).

    ``condition``: ``clean`` (the rendered guide) or ``dim`` (scene i's guide re-exposed by
    :data:`~optisr.degrade.low_light.DIM_INDOOR` with a generator seeded by ``(v.seed + i, 1)``).
    The depth is the clean depth either way.
    """
    from optisr.data.synthetic import make_scene
    from optisr.degrade.low_light import DIM_INDOOR, degrade_guide

    if condition not in VAL_GUIDE_CONDITIONS:
        raise ConfigError(
            f"unknown validation guide condition {condition!r} (known: {', '.join(VAL_GUIDE_CONDITIONS)})"
        )
    scenes = []
    for i in range(v.scenes):
        sc = make_scene(v.size, v.size, seed=v.seed + i)
        g = sc.guide
        if condition == "dim":
            g = degrade_guide(g, np.random.default_rng([v.seed + i, 1]), DIM_INDOOR)
        scenes.append(
            (torch.from_numpy(g).permute(2, 0, 1)[None].contiguous(), torch.from_numpy(sc.depth_clean)[None, None])
        )
    return scenes


def aligned_step_scene(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean vertical depth step of height 1 (0 | 1) whose colour edge is exactly on it.

    Returns (guide (1, 3, size, size) float32 in [0, 1], depth (1, 1, size, size) float32); the
    step lies between columns ``size // 2 − 1`` and ``size // 2``, the guide is dark | light with
    ±0.005 of seeded noise (the scene of ``tests/test_guided_api.py``'s exactness test, square).
    """
    rng = np.random.default_rng(0)
    half = size // 2
    guide = np.zeros((3, size, size), np.float32)
    guide[:, :, half:] = 1.0
    guide = np.clip(guide + rng.random(guide.shape, dtype=np.float32) * 0.01 - 0.005, 0.0, 1.0)
    depth = np.zeros((1, 1, size, size), np.float32)
    depth[..., half:] = 1.0
    return torch.from_numpy(guide)[None], torch.from_numpy(depth)


def rule_lams(source: torch.Tensor, target: torch.Tensor, scale: int, operator: str) -> torch.Tensor:
    """(B,) soft-mode λ per sample: :func:`~optisr.guided.fidelity.rule_lambda` of its true noise.

    Args:
        source: (B, 1, h, w) noisy LR (NaN = hole).
        target: (B, 1, H, W) the clean HR depth it was made from.
        scale: integer factor; operator: the batch's LR operator name.
    Returns:
        (B,) float tensor (source dtype); a sample without noise (or spread) gets the smallest λ of
        the batch's noisy ones (1e-6 when none is noisy).
    """
    from optisr.guided.fidelity import rule_lambda, source_spread
    from optisr.ops.operators import make_operator

    op = make_operator(operator, (target.shape[-2], target.shape[-1]), scale)
    with torch.no_grad():
        clean = op.apply(target.to(source.dtype))
        lams = []
        for s, c in zip(source, clean):
            ok = torch.isfinite(s)
            sigma = float((s[ok] - c[ok]).pow(2).mean().sqrt()) if bool(ok.any()) else 0.0
            spread = source_spread(s[0])
            lams.append(rule_lambda(sigma, spread, scale) if sigma > 0 and spread > 0 else float("nan"))
    t = torch.tensor(lams, dtype=source.dtype)
    fill = float(t[torch.isfinite(t)].min()) if bool(torch.isfinite(t).any()) else 1e-6
    return torch.nan_to_num(t, nan=fill).to(source.device)


class GuidedTask:
    """The :class:`optisr.train.loop.TrainTask` of the guided model."""

    def __init__(self, cfg: GuidedTrainConfig) -> None:
        self.cfg = cfg
        self._val: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._color: dict[str, dict[str, float]] = {}
        self._prefetch: BatchPrefetcher | None = None
        self._teacher: GraphSRModel | None = None

    def teacher(self) -> GraphSRModel:
        """The frozen teacher of ``loss.kind = "distill"`` (loaded once, eval mode, no gradients)."""
        if self._teacher is None:
            from optisr.guided.model import guided_model_path, load_guided_model

            self._teacher = load_guided_model(guided_model_path(self.cfg.loss.teacher))[0]
            self._teacher.requires_grad_(False)
        return self._teacher

    def build_model(self) -> GraphSRModel:
        model = GraphSRModel(self.cfg.model)
        if self.cfg.init_weights:
            from optisr.guided.model import load_guided_model

            start, _ = load_guided_model(self.cfg.init_weights)
            have, want = start.config.to_dict(), model.config.to_dict()
            # feature_stride may differ: same parameters, the network just runs at another resolution
            # mode and lam_init are not architecture: an exact model can start a soft fine-tune
            free = ("feature_stride", "mode", "lam_init")
            diff = ", ".join(
                f"model.{k}={have[k]} there, {want[k]} here" for k in want if have.get(k) != want[k] and k not in free
            )
            if diff:
                raise ConfigError(f"{self.cfg.init_weights}: init_weights has another architecture ({diff})")
            state = start.state_dict()
            if have.get("mode") != want["mode"] or have.get("lam_init") != want["lam_init"]:
                state["log_lam"] = model.log_lam.detach().clone()  # this config's λ, not the start's
            model.load_state_dict(state)
        return model

    def batch(self, step: int, rank: int) -> dict[str, Any]:
        d = self.cfg.datasets.train
        if d.num_workers > 0:
            if self._prefetch is None:
                self._prefetch = BatchPrefetcher(d, self.cfg.train.batch_size, self.cfg.train.seed, rank, d.num_workers)
            b = self._prefetch.get(step)
        else:
            b = make_training_batch(d, self.cfg.train.batch_size, self.cfg.train.seed, step, rank)
        return {
            "guide": b.guide,
            "target": b.target,
            "valid": b.valid,
            "source": b.source,
            "scale": b.scale,
            "operator": b.operator,
        }

    def loss(
        self, model: nn.Module | dict[str, nn.Module], batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        assert isinstance(model, nn.Module)  # build_model returns one network (possibly DDP-wrapped here)
        if self.cfg.loss.direct:
            return self._direct_loss(model, batch)
        s = self.cfg.solver
        anchored = self.cfg.loss.distill_weight > 0
        lam = None
        if self.cfg.model.mode == "soft" and self.cfg.loss.soft_lam == "rule":
            lam = rule_lams(batch["source"], batch["target"], batch["scale"], batch["operator"])
        out = model(
            batch["guide"],
            batch["source"],
            batch["scale"],
            operator=batch["operator"],
            tol=s.tol,
            max_iter=s.max_iter,
            precond=s.precond,
            on_nonconvergence="ignore",
            output="both" if anchored else "solution",
            lam=lam,
        )
        x, energy = out if anchored else (out, None)
        std = source_std(batch["source"]) + 1e-6  # finite pixels only: lr_noise holes are NaN
        loss = masked_loss(self.cfg.loss.kind, x, batch["target"], batch["valid"], std)
        logs = {f"{self.cfg.loss.kind}_norm": float(loss.detach())}
        if energy is not None:  # the anchor, on the energies of the same network pass
            anchor, _ = self._distill_loss(energy, batch)
            loss = loss + self.cfg.loss.distill_weight * anchor
            logs["distill_bce"] = float(anchor.detach())
        return loss, logs

    def _distill_loss(self, energy: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the edge energies' affinities against the frozen teacher's (see :class:`LossConfig`)."""
        from optisr.ops.lattice import edge_slots

        teacher = self.teacher().to(energy.device)
        with torch.no_grad():
            e_t = teacher(batch["guide"], batch["source"], batch["scale"], output="energy").to(energy.dtype)
        used = edge_slots(energy.shape[-2], energy.shape[-1], device=energy.device).expand_as(energy)
        loss = edge_bce_loss(energy, torch.exp(-e_t), used, self.cfg.loss.pos_weight)
        with torch.no_grad():  # how often student and teacher disagree about a cut (affinity < 0.5)
            err = float((((energy < math.log(2)) != (e_t < math.log(2))) & used).sum() / used.sum())
        return loss, {"distill_bce": float(loss.detach()), "cut_disagree": err}

    def _direct_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Edge BCE against the ground-truth depth's affinities: one network pass, no solve."""
        from optisr.guided.graph_weights import depth_affinity, depth_jump_affinity

        lc = self.cfg.loss
        energy = model(batch["guide"], batch["source"], batch["scale"], output="energy")
        if lc.kind == "distill":
            return self._distill_loss(energy, batch)
        if lc.kind == "kkt":
            from optisr.ops.lattice import weights_from_energy
            from optisr.ops.operators import make_operator

            x = batch["target"]
            op = make_operator(batch["operator"], (x.shape[-2], x.shape[-1]), batch["scale"])
            loss = kkt_loss(weights_from_energy(energy, self.cfg.model.floor), x.to(energy.dtype), op)
            return loss, {"kkt": float(loss.detach())}
        targets = depth_jump_affinity if lc.target == "jump" else depth_affinity
        target, edge_valid = targets(batch["target"], batch["valid"], mu=lc.depth_mu)
        loss = edge_bce_loss(energy, target, edge_valid, lc.pos_weight)
        with torch.no_grad():  # how often the predicted cut (a < 0.5) disagrees with the target's
            wrong = ((torch.exp(-energy) < 0.5) != (target < 0.5)) & edge_valid
            err = float(wrong.sum() / edge_valid.sum().clamp_min(1))
        return loss, {"edge_bce": float(loss.detach()), "edge_err": err}

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    def _val_scenes(self, condition: str = "clean") -> list[tuple[torch.Tensor, torch.Tensor]]:
        if condition not in self._val:
            self._val[condition] = validation_scenes(self.cfg.datasets.val, condition)
        return self._val[condition]

    def _val_solve(
        self,
        source: torch.Tensor,
        weights: torch.Tensor,
        scale: int,
        op: Any,
        lam: torch.Tensor | float = 1.0,
        mode: str | None = None,
    ) -> torch.Tensor:
        """The validation solve (the config's solver tolerances, floor and mode; never warns)."""
        from optisr.guided.layer import graph_solve

        s = self.cfg.solver
        return graph_solve(
            source,
            weights,
            scale,
            operator=op,
            tol=s.val_tol,
            max_iter=s.val_max_iter,
            precond=s.precond,
            on_nonconvergence="ignore",
            floor=self.cfg.model.floor,
            mode=mode or self.cfg.model.mode,
            lam=lam,
        )

    def _color_weights(self, guide: torch.Tensor) -> torch.Tensor:
        """The colour graph with the model config's μ, floor and weak-link threshold (the baseline)."""
        m = self.cfg.model
        return color_weights(guide, mu=m.color_mu, floor=m.floor, connect=m.connect)

    def _val_source(self, clean: torch.Tensor, i: int, f: int) -> tuple[torch.Tensor, float | None]:
        """The validation LR of scene ``i`` at scale ``f`` from its ``clean`` LR (noisy when ``val.noise`` > 0)
        and its soft λ (None: the model's)."""
        from optisr.guided.fidelity import rule_lambda, source_spread

        v = self.cfg.datasets.val
        src = clean
        if v.noise <= 0:
            return src, None
        sigma = v.noise * source_spread(src)
        rng = np.random.default_rng([v.seed + i, f])
        src = src + torch.from_numpy(rng.standard_normal(tuple(src.shape)).astype(np.float32) * sigma).to(src.device)
        lam = rule_lambda(sigma, source_spread(src), f) if self.cfg.loss.soft_lam == "rule" else None
        return src, lam

    def _evaluate(
        self,
        weights_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        device: torch.device | str = "cpu",
        condition: str = "clean",
        lam_of: Callable[[], torch.Tensor | float] = lambda: 1.0,
    ) -> dict[str, float]:
        from optisr.ops.operators import make_operator

        v = self.cfg.datasets.val
        out: dict[str, float] = {}
        for f in v.scales:
            errs = []
            for i, (guide, depth) in enumerate(self._val_scenes(condition)):
                guide, depth = guide.to(device), depth.to(device)
                op = make_operator(v.operator, (depth.shape[-2], depth.shape[-1]), f)
                clean = op.apply(depth)
                src, lam = self._val_source(clean, i, f)
                w = weights_fn(guide, src, f)
                x = self._val_solve(src, w, f, op, lam=lam if lam is not None else lam_of())
                errs.append(float((x - depth).pow(2).mean().sqrt() / (clean.std() + 1e-6)))
            out[f"nrmse_x{f}"] = float(np.mean(errs))
        out["nrmse"] = float(np.mean([out[f"nrmse_x{f}"] for f in v.scales]))
        return out

    def validate(self, model: nn.Module, step: int) -> dict[str, float]:
        assert isinstance(model, GraphSRModel)  # the eval model: this task's network (or its EMA copy), unwrapped
        out: dict[str, float] = {}
        for c in self.cfg.datasets.val.guide_conditions:
            lam_of = (lambda: model.log_lam.exp().item()) if self.cfg.model.mode == "soft" else (lambda: 1.0)
            if c not in self._color:  # (a learned λ of a soft model moves: its colour baseline uses the first one)
                self._color[c] = self._evaluate(lambda g, s, f: self._color_weights(g), condition=c, lam_of=lam_of)
            m = self._evaluate(lambda g, s, f: model.weights(g, s, f), _device_of(model), c, lam_of)
            m.update({f"color_{k}": v for k, v in self._color[c].items()})
            m["vs_color"] = m["nrmse"] / self._color[c]["nrmse"]
            suffix = "" if c == "clean" else f"_{c}"
            out.update({k + suffix: v for k, v in m.items()})
        out["step_mae"] = self._step_error(model)
        return out

    def _step_error(self, model: GraphSRModel) -> float:
        """Diagnostic (not a selection metric): mean |error| / step height on :func:`aligned_step_scene`
        at the middle validation scale. A clean depth step that its colour edge marks exactly should
        come back sharp; an end-to-end fine-tune that weakens every edge near depth steps blurs it."""
        from optisr.ops.operators import make_operator

        v = self.cfg.datasets.val
        f = v.scales[len(v.scales) // 2]
        guide, depth = aligned_step_scene(v.size)
        device = _device_of(model)
        guide, depth = guide.to(device), depth.to(device)
        op = make_operator(v.operator, (depth.shape[-2], depth.shape[-1]), f)
        src = op.apply(depth)
        x = self._val_solve(src, model.weights(guide, src, f), f, op, mode="exact")  # the edges' sharpness, any mode
        return float((x - depth).abs().mean())

    def val_images(self, model: nn.Module, step: int) -> dict[str, np.ndarray]:
        """guide | LR | colour graph | model | error maps of the first validation scene at the middle scale."""
        from optisr.ops.operators import make_operator
        from optisr.viz.panels import depth_panel

        v = self.cfg.datasets.val
        f = v.scales[len(v.scales) // 2]
        guide, depth = self._val_scenes()[0]
        assert isinstance(model, GraphSRModel)  # the eval model: this task's network (or its EMA copy), unwrapped
        dev = _device_of(model)
        op = make_operator(v.operator, (depth.shape[-2], depth.shape[-1]), f)
        src = op.apply(depth)

        def solve(source: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            return self._val_solve(source, weights, f, op)

        ours = solve(src.to(dev), model.weights(guide.to(dev), src.to(dev), f))[0, 0].cpu().numpy()
        color = solve(
            src,
            self._color_weights(guide),
        )[0, 0].numpy()
        panel = depth_panel(
            guide[0].permute(1, 2, 0).numpy(),
            {f"LR x{f}": src[0, 0].numpy(), "colour": color, "model": ours},
            reference=depth[0, 0].numpy(),
            error_of=["colour", "model"],
        )
        return {f"val/panel_x{f}": panel}

    def save_release(self, model: nn.Module, path: Path, metrics: dict[str, float]) -> None:
        from optisr.train.ema import unwrap_model

        net = unwrap_model(model)
        assert isinstance(net, GraphSRModel)  # this task's network (or its EMA copy)
        d = self.cfg.datasets.train
        save_guided_model(
            net,
            path,
            scales=list(d.scales),
            operator=d.operator if not d.operator_mix else "+".join(sorted(d.operator_mix)),
            training_data=_describe_training_data(self.cfg),
            metrics={k: round(v, 6) for k, v in metrics.items() if math.isfinite(v)},
            config_name=self.cfg.name,
        )


CONFIG_CLASS = GuidedTrainConfig


def add_dataset(cfg: GuidedTrainConfig, name: str, data_dir: str | os.PathLike) -> None:
    """Train on procedural scenes plus dataset ``name`` from ``data_dir``, equal weight.

    Replaces every non-synthetic source of ``cfg.datasets.train.sources`` (in place).
    """
    cfg.datasets.train.sources = [s for s in cfg.datasets.train.sources if s.name == "synthetic"] + [
        DataSourceConfig(name, str(data_dir), 1.0)
    ]


def train(
    cfg: GuidedTrainConfig,
    *,
    save_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    progress: bool = True,
    device: str | torch.device | None = "auto",
) -> FitResult:
    """Train the guided model described by ``cfg`` (``optisr train guided`` ends here).

    Args:
        cfg: the whole config (e.g. from :func:`optisr.config.build_config`).
        save_dir: run folder; None: ``cfg.path.save_dir``.
        resume: False, True (latest readable state in ``save_dir``), or a state file / folder.
        progress: progress bar on rank 0.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...

    Returns:
        the :class:`~optisr.train.loop.FitResult` (``save_dir`` holds ``last.safetensors``).

    Raises:
        ConfigError / InputFileError: a training data folder is missing, or bad settings or
            resume state (nothing is left in ``save_dir`` then).
    """
    for s in cfg.datasets.train.sources:
        if s.name != "synthetic" and not Path(s.data_dir).is_dir():
            raise ConfigError(f"{s.data_dir}: training data folder of {s.name!r} not found")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return run_training(
        GuidedTask(cfg),
        cfg.train,
        save_dir=Path(save_dir or cfg.path.save_dir),
        resume=resume,
        progress=progress,
        device=device,
        config=cfg,
    )
