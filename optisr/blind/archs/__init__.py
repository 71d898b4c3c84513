"""Generator architectures for blind real-world SR (BasicSR / Real-ESRGAN key layouts)."""

from optisr.blind.archs.compact import SRVGGNetCompact
from optisr.blind.archs.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock", "SRVGGNetCompact"]
