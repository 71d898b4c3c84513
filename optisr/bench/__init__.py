"""Benchmark harnesses behind ``optisr bench``: one module per engine.

Each module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""
