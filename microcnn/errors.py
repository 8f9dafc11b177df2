"""Exceptions that users of microcnn can catch.

Every error raised for bad user input derives from :class:`MicrocnnError` and also from the builtin that
fits it (``ValueError``, ``FileNotFoundError``...), so ``except ValueError`` keeps working.
Messages say what was expected, what came, and what to do.
"""

from __future__ import annotations


class MicrocnnError(Exception):
    """Base class of every error microcnn raises on purpose."""


class MicrographError(MicrocnnError, ValueError):
    """A micrograph could not be read or is not usable."""


class UnsupportedFormatError(MicrographError):
    """The file's content is not a format microcnn reads (decided from its magic bytes)."""


class CorruptFileError(MicrographError):
    """The file claims a supported format but is empty, truncated or damaged."""


class ImageTooLargeError(MicrographError):
    """The image (or its page count) is over the budget; checked before decoding."""


class DegenerateImageError(MicrographError):
    """The image has a shape or values that cannot be analysed (e.g. 0 px, NaN)."""


class MissingExtraError(MicrocnnError, ImportError):
    """An optional dependency is needed for this feature; the message names the pip extra to install."""


class ConfigError(MicrocnnError, ValueError):
    """An experiment configuration is invalid (unknown key, wrong type, impossible value)."""


class DatasetError(MicrocnnError, ValueError):
    """A dataset folder or archive does not follow the documented layout."""


class ModelFileError(MicrocnnError, ValueError):
    """A model file is corrupt, unsafe (pickle) or of an unsupported kind."""
