"""Benchmark harnesses behind ``optisr bench``: plain functions and dataclasses, no argument parsing.

* :mod:`optisr.bench.guided` -- guided depth SR under protocols A/B (runs the methods);
  :mod:`optisr.bench.guided_protocols` (regions, LR inputs, scores) and
  :mod:`optisr.bench.guided_report` (result, markdown, figures).
* :mod:`optisr.bench.blind` -- blind SR on the classic sets (runs the models);
  :mod:`optisr.data.sr_sets` (the test sets) and :mod:`optisr.bench.blind_report`.
* :mod:`optisr.bench.report` -- formatting, markdown tables and atomic writing shared by both.

The command line (``optisr bench guided|blind``) is :mod:`optisr.cli.bench`.
"""

__all__: list[str] = []
