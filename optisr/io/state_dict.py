"""Generic weights files: read tensors (and metadata), unwrap training checkpoints, write safetensors.

Supported inputs:

* ``.pth`` / ``.pt`` / ``.ckpt`` through :func:`load_torch_checkpoint` (``torch.load`` with
  ``weights_only=True``: no arbitrary pickles, and a one-line error in our words when refused);
* ``.safetensors`` (our own files carry an ``optisr`` metadata header with arch and hyperparameters).

Wrappers ``params_ema``, ``params``, ``state_dict``, ``model_state_dict``, ``model``, ``net``
(and ``params-ema``) are unwrapped, and ``module.`` / ``netG.`` prefixes stripped. Knowledge of
particular architectures (key layouts, building a network) lives with the engine that owns
them, e.g. :mod:`optisr.blind.checkpoints`.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from optisr.errors import InputFileError
from optisr.io.atomic import atomic_path

__all__ = [
    "canonicalize_state_dict",
    "load_state_dict_file",
    "load_torch_checkpoint",
    "save_model_safetensors",
]


@runtime_checkable
class _HasHyperparameters(Protocol):
    """A network that reports its constructor arguments (``hyperparameters()``), as optisr's archs do."""

    def hyperparameters(self) -> dict[str, Any]: ...


_WRAPPERS = (
    "params_ema",
    "params-ema",
    "params",
    "state_dict",
    "model_state_dict",
    "model",
    "net",
)
_PREFIXES = ("module.", "netG.", "generator.")


def canonicalize_state_dict(obj: object) -> dict[str, Tensor]:
    """Unwrap training-checkpoint wrappers and strip ``module.``-style prefixes.

    Args:
        obj: what ``torch.load`` returned: a state dict, or a dict wrapping one.
    Returns:
        a flat ``{key: tensor}`` dict.
    Raises:
        InputFileError: when no tensor dict can be found (message without a file name; callers
            add it).
    """
    for _ in range(4):
        if not isinstance(obj, dict):
            break
        if any(isinstance(v, Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            inner = next(iter(obj.values()))
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise InputFileError("checkpoint holds no state dict")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not sd:
        raise InputFileError("checkpoint holds no tensors")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def load_torch_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", what: str = "weights file"
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that name the file.

    Only tensors, numbers, strings and plain containers are accepted: a file that needs arbitrary
    pickled Python objects is refused (it could run code when read) without torch's multi-line
    advice to switch the safety off.

    Args:
        path: a ``.pth`` / ``.pt`` / ``.ckpt`` file written by ``torch.save``.
        map_location: where tensors are placed, as for ``torch.load``.
        what: how messages name the file's role (``"weights file"``, ``"training state"``...).

    Returns:
        what ``torch.load`` returns.

    Raises:
        InputFileError: missing, truncated or unreadable, or holding pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _weights_only_detail(exc)
        if "unsupported global" in detail.lower():  # a class or function pickled by reference
            raise InputFileError(
                f"{path}: not a plain {what} (it holds pickled Python objects, refused for safety); "
                "re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors"
            ) from None
        raise InputFileError(f"{path}: cannot read {what}, not a torch file ({detail})") from None
    except Exception as exc:  # truncated zip archive, I/O errors
        raise InputFileError(
            f"{path}: cannot read {what}, truncated or not a torch file ({_first_line(exc)})"
        ) from None


def _weights_only_detail(exc: BaseException) -> str:
    """The actual reason inside torch's multi-line weights-only message (its advice dropped)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0].split(". Please use", 1)[0].rstrip(".")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    """First sentence of the first line of ``exc``'s message (its type name when empty)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.splitlines()[0].strip().split(". ", 1)[0].rstrip(".")


def load_state_dict_file(
    path: str | os.PathLike,
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read tensors (and safetensors metadata) from ``.pth``/``.pt``/``.ckpt``/``.safetensors``.

    Returns:
        ``(state_dict, metadata)``; the state dict is canonicalised but keys are not renamed.
    Raises:
        InputFileError: missing, unreadable or unsafe file; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: model file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                obj = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        else:
            meta = {}
            obj = load_torch_checkpoint(path)
        return canonicalize_state_dict(obj), meta
    except InputFileError as exc:
        if str(exc).startswith(f"{path}:"):  # already names the file (load_torch_checkpoint)
            raise
        raise InputFileError(f"{path}: {exc}") from exc
    except Exception as exc:  # safetensors header errors, truncated files
        raise InputFileError(f"{path}: cannot load weights ({_first_line(exc)})") from exc


def save_model_safetensors(
    model: nn.Module, path: str | os.PathLike, *, storage_dtype: torch.dtype | None = None, **metadata: str
) -> Path:
    """Save a generator's weights (BasicSR key names) to safetensors with a metadata header.

    The header holds ``arch`` (class name), ``hyperparameters`` (JSON) and ``scale`` plus any
    extra string ``metadata``. The file loads in spandrel / chaiNNer / Real-ESRGAN without optisr.
    ``storage_dtype`` (e.g. ``torch.float16``) converts the floating-point tensors for storage
    (loaders turn them back into float32). Written atomically.
    """
    from safetensors.torch import save_file

    hp = model.hyperparameters() if isinstance(model, _HasHyperparameters) else {}
    meta = {
        "format": "pt",
        "arch": type(model).__name__,
        "hyperparameters": json.dumps(hp),
    }
    if "scale" in hp:
        meta["scale"] = str(hp["scale"])
    meta.update({k: str(v) for k, v in metadata.items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    return path
