"""colour_blended: a learned graph blended with the colour graph (tried for noisy sources, not a default)."""

from __future__ import annotations

import pytest
import torch

from optisr.errors import ConfigError
from optisr.guided.graph_weights import color_weights, colour_blended


def test_colour_blended_is_the_weighted_geometric_mean():
    g = torch.Generator().manual_seed(0)
    guide = torch.rand(1, 3, 24, 20, generator=g)
    w = torch.rand(1, 2, 24, 20, generator=g) * 0.9 + 0.05
    c = color_weights(guide)
    for share in (0.0, 0.25, 0.5, 1.0):
        out = colour_blended(lambda _g, _s: w, share)(guide, torch.zeros(1, 1, 6, 5))
        assert torch.allclose(out, w ** (1 - share) * c.clamp_min(1e-6) ** share, rtol=1e-5)
    with pytest.raises(ConfigError, match="colour share"):
        colour_blended(lambda _g, _s: w, 1.5)
