"""Learned graph regularisation: a compact U-Net turns (guide, upsampled source) into edge weights.

The model is the LGR design (de Lutio et al. 2022) with a network small enough to train from
scratch on a CPU:

    guide (B,3,H,W) in [0,1] ─┐
                              ├─> FeatureUNet ─> colour gate g, K features F ─┐
    source (B,1,h,w) ─ bicubic up, z-scored ─┘                                 ├─> edge weights ─> graph_solve ─> x
    guide colour differences / μ² (learned μ) ─────────────────────────────────┘

Edge weights (see :meth:`GraphSRModel.weights`) combine the colour graph's term, scaled per edge
by a learned gate (so texture edges that are not depth edges can be ignored), with learned
features that cut depth edges the colour misses. The network's last convolution starts near zero,
so an untrained model is (nearly) the colour-affinity graph of
:func:`optisr.guided.api.color_weights`; training moves away from it where that helps.

The solver works in the source's own units (it is linear in ``s``), so one model serves depth in
mm, disparity or metres alike; only the network input is normalised per sample.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optisr.errors import ConfigError, ShapeError
from optisr.guided.layer import graph_solve
from optisr.ops.lattice import connect_isolated, edge_energy, edge_slots, weights_from_energy
from optisr.ops.operators import lr_size

__all__ = [
    "ARCH",
    "EDGE_EXTRA_OFFSET",
    "EdgeTrunk",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureUNet",
    "GraphSRConfig",
    "GraphSRModel",
    "SHIPPED_MODELS",
    "default_model_path",
    "guided_model_path",
    "load_default_model",
    "load_guided_model",
    "save_guided_model",
    "shipped_model_path",
    "source_stats",
    "upsample_source",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class GraphSRConfig:
    """Architecture of :class:`GraphSRModel` (stored in checkpoint metadata).

    Attributes:
        widths: channels per U-Net level, full resolution first (len = levels, ≥ 1).
        features: K, learned feature channels that enter the edge weights.
        color_mu: μ of the colour graph the untrained model reproduces.
        floor: minimum edge weight (see :func:`optisr.ops.lattice.edge_weights`).
        mode: ``exact`` (hard consistency) or ``soft`` (LGR penalty with learned λ).
        lam_init: initial λ of the soft mode.
        scale_input: give the network the scale as a constant input channel ``log2(f)/4`` (how
            far to trust colour edges depends on how dense the LR constraints are).
        connect: weak-link threshold of :func:`optisr.ops.lattice.connect_isolated`, applied to the
            final weights (0 disables; models saved before it existed get the default too).
        feature_stride: 1 runs the U-Net at full resolution; 2 runs it on a 2×2 average-pooled
            input and upsamples its output bilinearly (about 4× less network time; the colour term
            of the edge weights stays at full resolution). For ``arch="edge"`` the stride of its
            space-to-depth input (2, 4 or 8).
        arch: ``unet`` (the per-pixel gate + K features of the first model) or ``edge`` (a
            reduced-resolution network that predicts, per edge, a gate on the colour term and an
            extra depth-edge energy; built for direct edge supervision, see :meth:`GraphSRModel.edge_energy`).
        head_width: ``arch="edge"`` only: channels of a light full-resolution head (two 3×3
            convolutions on the guide, the upsampled source and ``head_width`` upsampled trunk
            features) that places the edges to the pixel; 0 = the trunk's bilinearly upsampled
            maps alone.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    features: int = 16
    color_mu: float = 0.02
    floor: float = 1e-3
    mode: str = "exact"
    lam_init: float = 1.0
    scale_input: bool = True
    feature_stride: int = 1
    connect: float = 0.02
    arch: str = "unet"
    head_width: int = 0

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"model.widths must be positive channel counts, got {self.widths}")
        if self.features < 1:
            raise ConfigError(f"model.features must be ≥ 1, got {self.features}")
        if not 0 < self.color_mu:
            raise ConfigError(f"model.color_mu must be > 0, got {self.color_mu}")
        if not 0 <= self.floor < 1:
            raise ConfigError(f"model.floor must be in [0, 1), got {self.floor}")
        if not 0 <= self.connect < 1:
            raise ConfigError(f"model.connect must be in [0, 1), got {self.connect}")
        if self.head_width < 0 or (self.head_width and self.arch != "edge"):
            raise ConfigError(f"model.head_width must be ≥ 0 and needs arch 'edge', got {self.head_width}")
        if self.arch not in ("unet", "edge"):
            raise ConfigError(f"model.arch must be 'unet' or 'edge', got {self.arch!r}")
        strides = (1, 2, 4) if self.arch == "unet" else (2, 4, 8)
        if self.feature_stride not in strides:
            raise ConfigError(
                f"model.feature_stride must be one of {strides} for arch {self.arch!r}, got {self.feature_stride!r}"
            )
        if self.mode not in ("exact", "soft"):
            raise ConfigError(f"model.mode must be 'exact' or 'soft', got {self.mode!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class _Block(nn.Sequential):
    """Two 3×3 conv + LeakyReLU (no normalisation: batch statistics of tiny CPU batches are noisy)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
        )


class FeatureUNet(nn.Module):
    """U-Net (B, cin, H, W) → (B, cout, H, W) for any H, W (inputs are padded to 2^(levels−1)).

    Downsampling by 2×2 average pooling, upsampling by bilinear interpolation + concatenation of
    the skip connection. The output convolution starts small (std 1e-2), so the features start
    nearly constant.
    """

    def __init__(self, cin: int, cout: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = len(widths)
        self.down = nn.ModuleList()
        c = cin
        for w in widths:
            self.down.append(_Block(c, w))
            c = w
        self.up = nn.ModuleList()
        for w_skip in reversed(widths[:-1]):
            self.up.append(_Block(c + w_skip, w_skip))
            c = w_skip
        self.head = nn.Conv2d(c, cout, 1)
        # Small, not zero: with identically zero features every feature difference is 0 and so
        # is the gradient of exp(−diff²), so a zero-initialised head would never learn.
        nn.init.normal_(self.head.weight, std=1e-2)
        assert self.head.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.head.bias)
        # channels-last convolutions are about 2× faster on CPU (oneDNN) for these narrow layers;
        # load_state_dict keeps the layout, and the output is returned in the usual layout
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at runtime; not in torch's stubs

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        m = 2 ** (self.levels - 1)
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :H, :W].contiguous()


class EdgeTrunk(nn.Module):
    """Reduced-resolution edge predictor: (B, cin, H, W) → (B, 4, H, W) per-edge maps.

    The full-resolution input is folded into channels (space-to-depth by ``stride``: no pixel is
    lost, yet every convolution runs on ``stride²``× fewer positions), a :class:`FeatureUNet`
    works at 1/stride … 1/(stride·2^(levels−1)) (receptive field for ×16 at ``stride=4`` and 4
    levels), and its output is upsampled bilinearly back to (H, W). With ``head_width`` = 0 that
    output is the 4 maps: channels 0–1 the log-gates of the vertical / horizontal colour edges,
    2–3 the raw extra energies of vertical / horizontal edges. With ``head_width`` = c > 0 the
    trunk returns 4 + c channels and a light full-resolution head (two 3×3 convolutions of c
    channels on the input and the upsampled c features) adds a pixel-precise correction to the 4
    maps (its last layer starts at zero, so an untrained head changes nothing).
    """

    def __init__(self, cin: int, widths: tuple[int, ...], stride: int, head_width: int = 0) -> None:
        super().__init__()
        self.stride = stride
        self.net = FeatureUNet(cin * stride * stride, 4 + head_width, widths)
        self.head: nn.Sequential | None = None
        if head_width:
            last = nn.Conv2d(head_width, 4, 3, padding=1)
            nn.init.zeros_(last.weight)
            assert last.bias is not None
            nn.init.zeros_(last.bias)
            self.head = nn.Sequential(
                nn.Conv2d(cin + head_width, head_width, 3, padding=1), nn.LeakyReLU(0.1, inplace=True), last
            )
            self.head.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # see FeatureUNet

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        k = self.stride
        ph, pw = (-H) % k, (-W) % k
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        out = self.net(F.pixel_unshuffle(xp, k))
        # bilinear, align_corners=False: the centre of a k×k block maps onto the centre of its cell
        out = F.interpolate(out, scale_factor=k, mode="bilinear", align_corners=False)[..., :H, :W]
        if self.head is None:
            return out
        maps, feat = out[:, :4], out[:, 4:]
        return maps + self.head(torch.cat([x, feat], dim=1).contiguous(memory_format=torch.channels_last))


EDGE_EXTRA_OFFSET = 5.0
"""The extra energy of the ``edge`` arch is ``softplus(z − 5)``: ≈ 0.007 for an untrained (z ≈ 0) network."""


def source_stats(source: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample mean and standard deviation (B, 1, 1, 1) over the valid pixels of (B, 1, h, w)."""
    valid = torch.isfinite(source)
    if mask is not None:
        valid = valid & mask.to(torch.bool)
    s = torch.where(valid, source, torch.zeros_like(source))
    n = valid.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = s.sum(dim=(1, 2, 3), keepdim=True) / n
    var = ((s - mean) * valid).pow(2).sum(dim=(1, 2, 3), keepdim=True) / n
    return mean, var.sqrt()


def upsample_source(
    source: Tensor,
    scale: int,
    size: tuple[int, int],
    mask: Tensor | None = None,
    stats: tuple[float, float] | None = None,
) -> Tensor:
    """Bicubic upsampling of an LR source with invalid pixels filled, z-scored per sample.

    Args:
        source: (B, 1, h, w); NaN (or ``mask`` False) marks invalid pixels.
        scale: integer scale f; the LR grid covers ``f·h × f·w ≥ H × W``. A source whose grid does
            not fit (H, W) at f (``ceil((H, W)/f) != (h, w)``: a non-integer ratio) is taken as
            covering the same field of view and resampled straight to (H, W).
        size: HR (H, W).
        mask: optional bool (B, 1, h, w), True = valid.
        stats: (mean, std) to z-score with instead of the sample's own; tile-wise solves pass the
            whole image's, so every tile sees the same network input.
    Returns:
        (B, 1, H, W) float, zero mean and unit variance over the valid LR pixels of each sample.
    """
    valid = torch.isfinite(source)
    if mask is not None:
        valid = valid & mask.to(torch.bool)
    s = torch.where(valid, source, torch.zeros_like(source))
    mean, std = source_stats(source, mask) if stats is None else stats
    z = torch.where(valid, (s - mean) / (std + 1e-6), torch.zeros_like(s))
    h, w = source.shape[-2:]
    if lr_size((size[0], size[1]), scale) != (h, w):
        # a source at a non-integer ratio covers the whole field of view: resample straight to (H, W)
        return F.interpolate(z, size=tuple(size), mode="bicubic", align_corners=False)
    up = F.interpolate(z, size=(h * scale, w * scale), mode="bicubic", align_corners=False)
    return up[..., : size[0], : size[1]]


class GraphSRModel(nn.Module):
    """Guided SR by learned graph regularisation (exactly consistent in ``exact`` mode).

    ``forward(guide, source, scale, operator=..., mask=...)``:
        guide: (B, 3, H, W) float RGB in [0, 1] (grey guides: repeat to 3 channels).
        source: (B, 1, h, w) float in any unit, ``(h, w) = ceil((H, W)/scale)``; NaN = invalid.
        Returns the HR target (B, 1, H, W) in the source's units.
    """

    _mean: Tensor  # (1, 3, 1, 1) ImageNet channel means (buffer)
    _std: Tensor  # (1, 3, 1, 1) ImageNet channel standard deviations (buffer)

    def __init__(self, config: GraphSRConfig | None = None) -> None:
        super().__init__()
        self.config = config or GraphSRConfig()
        c = self.config
        cin = 5 if c.scale_input else 4
        self.net: nn.Module
        if c.arch == "edge":
            self.net = EdgeTrunk(cin, c.widths, c.feature_stride, c.head_width)
        else:
            self.net = FeatureUNet(cin, 1 + c.features, c.widths)
        self.log_color_mu = nn.Parameter(torch.tensor(math.log(c.color_mu)))
        log_lam = torch.tensor(math.log(c.lam_init))
        if c.mode == "soft":  # λ is learned only where it acts (DDP rejects unused parameters)
            self.log_lam = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lam", log_lam)
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, guide: Tensor, source: Tensor, scale: int, mask: Tensor | None = None, stats=None) -> Tensor:
        """(B, C, H, W) network output at full resolution.

        ``arch="unet"``: C = 1 + K, a colour-gate logit, then K depth-edge features.
        ``arch="edge"``: C = 4, log-gates and raw extra energies of vertical / horizontal edges.
        """
        if guide.dim() != 4 or guide.shape[1] != 3:
            raise ShapeError(f"guide must be (B, 3, H, W), got {tuple(guide.shape)}")
        H, W = guide.shape[-2:]
        up = upsample_source(source, scale, (H, W), mask, stats).to(guide.dtype)
        parts = [(guide - self._mean.to(guide.dtype)) / self._std.to(guide.dtype), up]
        if self.config.scale_input:
            parts.append(torch.full_like(up, math.log2(scale) / 4.0))
        x = torch.cat(parts, dim=1)
        k = self.config.feature_stride
        if k == 1 or self.config.arch == "edge":
            return self.net(x)
        ph, pw = (-H) % k, (-W) % k
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = self.net(F.avg_pool2d(x, k))
        out = F.interpolate(out, scale_factor=k, mode="bilinear", align_corners=False)
        return out[..., :H, :W]

    def edge_energy(self, guide: Tensor, source: Tensor, scale: int, mask: Tensor | None = None, stats=None) -> Tensor:
        """(B, 2, H, W) edge energies E ≥ 0 (layout of :mod:`optisr.ops.lattice`; unused slots 0).

        The weights are ``floor + (1 − floor)·exp(−E)``; ``exp(−E)`` is the edge's affinity, the
        quantity direct supervision compares with the ground-truth depth's.

        ``arch="unet"``: ``E_pq = ḡ_pq·mean_c(G_cp − G_cq)²/μ² + mean_k(F_kp − F_kq)²``, the colour
        term of the colour graph scaled per edge by the gate ``ḡ_pq = (g_p + g_q)/2`` with
        ``g = 2·sigmoid(logit)`` ∈ (0, 2) (so the network can ignore texture edges, g → 0, or
        sharpen colour edges, g → 2), plus learned features F that cut depth edges the colour
        misses. With a zero network output this is exactly :func:`optisr.guided.api.color_weights`.

        ``arch="edge"``: ``E = exp(a)·mean_c ΔG²/μ² + softplus(e − 5)`` with the per-edge log-gate
        ``a`` ∈ [−10, 8] (texture edges ignored, faint depth edges amplified) and extra energy
        ``e`` (depth edges without a colour edge), both predicted at reduced resolution.
        """
        out = self.features(guide, source, scale, mask, stats)
        inv_mu2 = torch.exp(-2.0 * self.log_color_mu)
        if self.config.arch == "edge":
            colour = edge_energy(guide, 1.0) * inv_mu2
            gate = torch.exp(out[:, :2].clamp(-10.0, 8.0))
            extra = F.softplus(out[:, 2:] - EDGE_EXTRA_OFFSET)
            energy = gate * colour + extra
            return energy * edge_slots(energy.shape[-2], energy.shape[-1], device=energy.device)

        gate = 2.0 * torch.sigmoid(out[:, :1])
        feat = out[:, 1:]

        def edges(t: Tensor, dim: int) -> tuple[Tensor, Tensor]:
            n = t.shape[dim]
            a, b = t.narrow(dim, 1, n - 1), t.narrow(dim, 0, n - 1)
            return a, b

        energies = []
        for dim in (2, 3):  # channel 0: vertical edges, channel 1: horizontal edges
            g1, g0 = edges(guide, dim)
            f1, f0 = edges(feat, dim)
            s1, s0 = edges(gate, dim)
            energy = 0.5 * (s1 + s0) * (g1 - g0).pow(2).mean(1, keepdim=True) * inv_mu2
            energy = energy + (f1 - f0).pow(2).mean(1, keepdim=True)
            energies.append(F.pad(energy, (0, 0, 0, 1) if dim == 2 else (0, 1, 0, 0)))
        return torch.cat(energies, dim=1)

    def weights(self, guide: Tensor, source: Tensor, scale: int, mask: Tensor | None = None, stats=None) -> Tensor:
        """(B, 2, H, W) edge weights in [floor, 1] (layout of :mod:`optisr.ops.lattice`).

        ``floor + (1 − floor)·exp(−E)`` with E from :meth:`edge_energy`; isolated pixels are then
        linked to their most similar neighbour (``config.connect``; the energy ranks floor-level edges).
        """
        return self._weights_of(self.edge_energy(guide, source, scale, mask, stats))

    def _weights_of(self, energy: Tensor) -> Tensor:
        """:meth:`weights` from edge energies already computed."""
        return connect_isolated(weights_from_energy(energy, self.config.floor), self.config.connect, -energy.detach())

    def forward(
        self,
        guide: Tensor,
        source: Tensor,
        scale: int,
        *,
        operator: str = "area",
        mask: Tensor | None = None,
        sigma: float | None = None,
        tol: float = 1e-4,
        max_iter: int = 2000,
        on_nonconvergence: str = "warn",
        output: str = "solution",
        precond: str = "jacobi",
        lam: Tensor | float | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The HR solution (B, 1, H, W); with ``output="energy"`` the edge energies (B, 2, H, W) of
        :meth:`edge_energy` without a solve (direct edge supervision trains on those); with
        ``output="both"`` the tuple (solution, energies) from one network pass (an end-to-end loss
        with a term on the energies). ``precond``: the CG preconditioner (``jacobi``, ``multigrid``, ``none``).
        ``lam``: λ of the soft mode (a float, or a (B,) tensor: one per sample) instead of the learned one."""
        if output not in ("solution", "energy", "both"):
            raise ConfigError(f"output must be 'solution', 'energy' or 'both', got {output!r}")
        energy = self.edge_energy(guide, source, scale, mask)
        if output == "energy":
            return energy
        w = self._weights_of(energy)
        x = graph_solve(
            source,
            w.to(source.dtype),
            scale,
            operator=operator,
            mode=self.config.mode,
            lam=self.log_lam.exp().to(source.dtype) if lam is None else lam,
            mask=mask,
            sigma=sigma,
            tol=tol,
            max_iter=max_iter,
            precond=precond,
            on_nonconvergence=on_nonconvergence,
            floor=self.config.floor,
        )
        return (x, energy) if output == "both" else x


ARCH = "GraphSRModel"


def save_guided_model(
    model: GraphSRModel,
    path: str | os.PathLike,
    *,
    scales: list[int],
    operator: str,
    training_data: str,
    **extra: object,
) -> Path:
    """Write a guided model to safetensors, atomically, with a metadata header.

    Header keys (strings): ``arch``, ``config`` (JSON of :class:`GraphSRConfig`), ``scales``
    (JSON list), ``operator`` (the LR operator it was trained with), ``training_data``,
    ``version`` (optisr) and any ``extra`` (JSON-encoded unless already a string).
    """
    from safetensors.torch import save_file

    from optisr.io.atomic import atomic_path
    from optisr.version import __version__

    meta = {
        "format": "pt",
        "arch": ARCH,
        "config": json.dumps(model.config.to_dict()),
        "scales": json.dumps([int(f) for f in scales]),
        "operator": operator,
        "training_data": training_data,
        "version": __version__,
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    os.chmod(path, 0o644)
    return path


def load_guided_model(path: str | os.PathLike) -> tuple[GraphSRModel, dict[str, str]]:
    """Load a model written by :func:`save_guided_model`; returns (model in eval mode, header)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from optisr.errors import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: guided model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("arch") != ARCH:
        raise InputFileError(f"{path}: not a guided optisr model (arch={meta.get('arch')!r}, expected {ARCH!r})")
    try:
        cfg = GraphSRConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: bad or missing 'config' metadata ({exc})") from None
    model = GraphSRModel(cfg)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise InputFileError(
            f"{path}: weights do not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval(), meta


@functools.lru_cache(maxsize=1)
def load_default_model() -> GraphSRModel | None:
    """The shipped model (cached, eval mode), or None when this install carries none."""
    path = default_model_path()
    return load_guided_model(path)[0] if path.is_file() else None


def default_model_path() -> Path:
    """The model shipped inside the package (``optisr/guided/weights/default.safetensors``)."""
    return Path(__file__).resolve().parent / "weights" / "default.safetensors"


SHIPPED_MODELS = {"unet-v1": "unet-v1.safetensors"}
"""Further guided models shipped in the package, by name: ``unet-v1`` is the U-Net that was the
default until 2026-12-02 and is the teacher the default was distilled from."""


def guided_model_path(ref: str | os.PathLike) -> Path:
    """The file of a guided model reference: ``"default"``, a name in :data:`SHIPPED_MODELS`, or a path."""
    if isinstance(ref, str) and (ref == "default" or ref in SHIPPED_MODELS):
        return shipped_model_path(ref)
    return Path(ref)


def shipped_model_path(name: str) -> Path:
    """The file of a shipped model: ``"default"`` or a name in :data:`SHIPPED_MODELS`."""
    if name == "default":
        return default_model_path()
    if name not in SHIPPED_MODELS:
        raise ConfigError(f"unknown shipped guided model {name!r} (known: default, {', '.join(SHIPPED_MODELS)})")
    return Path(__file__).resolve().parent / "weights" / SHIPPED_MODELS[name]
