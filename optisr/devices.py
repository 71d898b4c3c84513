"""Device names -> :class:`torch.device`, checked before any work starts.

One rule for every entry point (API and CLI): ``"auto"`` (the default) means CUDA when this
torch build and machine have it, else the CPU; anything else is a torch device name (``cpu``,
``cuda``, ``cuda:1``, ``mps``) that must exist here, or a :class:`~optisr.errors.ConfigError`
with one line says why not.
"""

from __future__ import annotations

import torch

from optisr.errors import ConfigError

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (default auto: CUDA when available, else cpu)"


def resolve_device(spec: str | torch.device | None = "auto", *, what: str = "--device") -> torch.device:
    """Return the :class:`torch.device` for ``spec``, or raise a one-line ConfigError.

    Args:
        spec: ``None`` or ``"auto"`` (CUDA if available, else CPU), a device name, or a device.
        what: how the caller names the setting in messages (a CLI flag or an argument name).

    Raises:
        ConfigError: ``spec`` is not a device name, or names a device this machine lacks.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec.strip() if isinstance(spec, str) else spec)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{what} {spec!r}: not a device name (auto, cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {spec}: this torch build or machine has no CUDA; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{what} {spec}: this torch build or machine has no MPS; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"{what} {spec}: unsupported device type {dev.type!r} (auto, cpu, cuda, mps)")
    return dev
