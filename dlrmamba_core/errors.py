"""Exception types shared by the whole library.

Every error meant for a user derives from :class:`DlrmambaError`; the CLI prints its message
without a traceback. Messages say what was wrong (naming the file, line, topic or field) and
what to do about it.
"""

from __future__ import annotations


class DlrmambaError(Exception):
    """Base class of all user-facing errors of dlrmamba."""


class DatasetError(DlrmambaError):
    """A dataset path, layout or annotation is missing or malformed."""


class ModelFileError(DlrmambaError):
    """A model file (ONNX, checkpoint, model card) is missing, corrupt or inconsistent."""


class InputError(DlrmambaError, ValueError):
    """An image or array given to the detector has the wrong shape, dtype or content."""


class ConfigError(DlrmambaError, ValueError):
    """A configuration value is invalid (unknown variant, out-of-range parameter, ...)."""


class BagError(DlrmambaError):
    """A rosbag is missing, corrupt, or lacks the requested topics."""
