"""Exception and warning classes.

Every exception derives from both :class:`OptiSRError` and a built-in, so callers can catch
either ``OptiSRError`` or the usual ``ValueError`` / ``OSError``.
"""

from __future__ import annotations


class OptiSRError(Exception):
    """Base class of every error raised by optisr."""


class ShapeError(OptiSRError, ValueError):
    """A tensor or array has the wrong number of dimensions or the wrong size."""


class ConfigError(OptiSRError, ValueError):
    """A configuration value or option is invalid."""


class InputFileError(OptiSRError, OSError):
    """An input file is missing, unreadable or holds data optisr cannot use.

    The message always names the file.
    """


class OutputExistsError(OptiSRError, FileExistsError):
    """An output file exists and the caller did not allow replacing it (the message names it)."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""
