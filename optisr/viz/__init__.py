"""Figures: colour-mapped depth panels (OpenCV only, no matplotlib needed)."""
