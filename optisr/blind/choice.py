"""Which installed generator (and pre-filter) fits an input's degradation.

The input is put in one class from its :class:`~optisr.degrade.estimate.Degradation`:

* ``"blocky"``: a JPEG file with quality below :data:`JPEG_LOW_QUALITY` (60: IJG tables at q < 60
  give visible 8×8 blocks), or any image whose grid score is at least
  :data:`~optisr.degrade.estimate.BLOCKY` (1.10);
* ``"noisy"``: otherwise, noise σ ≥ :data:`NOISY_SIGMA` (3.0 in 0–255 units: the clean LR photos
  of RealSRSet+5 read 0.0–2.7, the visibly grainy or noisy ones 4.0–16);
* ``"clean"``: the rest.

:data:`RULES` is read top to bottom; the first rule whose condition covers the class and whose
model is installed wins. Conditions: a class, ``"degraded"`` (blocky or noisy) or ``"any"``.
Adding a model is one entry, e.g. ``Rule("degraded", "my-camera-x4")``. The bundled
``otsr-compact-x4`` is deliberately not in the table: on the held-out BSDS200 val split it beat
RealSR DF2K behind the pre-filter for degraded inputs (+0.5 dB PSNR-Y, 35× faster), but like
RealSR DF2K it renders film grain (RealSRSet ``oldphoto2``) as a dense texture, which the
pre-filter path avoids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from optisr.degrade.estimate import Degradation

__all__ = [
    "JPEG_LOW_QUALITY",
    "NOISY_SIGMA",
    "RULES",
    "Choice",
    "Rule",
    "choose_model",
    "degradation_class",
    "model_installed",
]

JPEG_LOW_QUALITY = 60.0
NOISY_SIGMA = 3.0
Condition = Literal["blocky", "noisy", "clean", "degraded", "any"]
_PREFILTER_WORDS = {"deblock": "deblocking", "denoise": "denoising"}


@dataclass(frozen=True)
class Rule:
    """Use ``model`` (with ``prefilter``) for inputs of class ``when``."""

    when: Condition
    model: str
    prefilter: str = "none"

    def covers(self, cls: str) -> bool:
        return self.when == cls or self.when == "any" or (self.when == "degraded" and cls != "clean")


RULES: tuple[Rule, ...] = (
    # Real-ESRGAN x4plus was trained with JPEG (q 30–95) and strong noise: a clean result on them.
    Rule("blocky", "realesrgan-x4plus"),
    Rule("noisy", "realesrgan-x4plus"),
    # RealSR DF2K learnt camera noise/blur only: restore first, then upscale.
    Rule("blocky", "realsr-df2k-x4", "deblock"),
    Rule("noisy", "realsr-df2k-x4", "denoise"),
    # On clean camera LR RealSR DF2K is the better model (higher PSNR than Real-ESRGAN).
    Rule("clean", "realsr-df2k-x4"),
    Rule("any", "realesrgan-x4plus"),
)


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_model` picked and why."""

    model: str
    prefilter: str
    degradation_class: str
    degradation: Degradation

    def describe(self) -> str:
        """e.g. ``noise σ≈5.2, … -> realsr-df2k-x4 with denoising pre-filter``."""
        tail = f" with {_PREFILTER_WORDS[self.prefilter]} pre-filter" if self.prefilter in _PREFILTER_WORDS else ""
        return f"{self.degradation.describe()} -> {self.model}{tail}"


def degradation_class(d: Degradation) -> str:
    """``"blocky"``, ``"noisy"`` or ``"clean"`` (see the module docstring)."""
    if (d.jpeg_quality is not None and d.jpeg_quality < JPEG_LOW_QUALITY) or d.blocky:
        return "blocky"
    if d.noise_sigma >= NOISY_SIGMA:
        return "noisy"
    return "clean"


def model_installed(name: str) -> bool:
    """Whether registered model ``name`` can be loaded offline (its source package is installed)."""
    from optisr.blind.registry import MODELS, find_source

    return name in MODELS and find_source(name) is not None


def choose_model(
    d: Degradation,
    *,
    rules: Sequence[Rule] | None = None,
    installed: Callable[[str], bool] | None = None,
) -> Choice:
    """The first rule of ``rules`` (default :data:`RULES`) that covers ``d``'s class and whose
    model is ``installed`` (default :func:`model_installed`).

    Falls back to the default model without pre-filter when no rule applies (its loading then
    says which package to install).
    """
    from optisr.blind.registry import DEFAULT_MODEL

    rules = RULES if rules is None else rules
    installed = model_installed if installed is None else installed
    cls = degradation_class(d)
    for rule in rules:
        if rule.covers(cls) and installed(rule.model):
            return Choice(rule.model, rule.prefilter, cls, d)
    return Choice(DEFAULT_MODEL, "none", cls, d)
