"""The finishing touches shared by the benchmarks' time-against-pixels figures (needs matplotlib)."""

from __future__ import annotations

from typing import Any


def pixels_figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A new (figure, axes) for a time-vs-HR-pixels plot, drawn off-screen (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def save_pixels_figure(fig: Any, ax: Any, ylabel: str, path: str) -> None:
    """Label a log-log time-vs-HR-pixels axis, add grid and legend, and save ``fig`` to ``path``."""
    ax.set_xlabel("HR pixels")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")
