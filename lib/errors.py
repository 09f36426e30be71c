"""Exceptions whose message is meant for the user, shown by the CLI and the app as-is.

try:
    ds = load_dataset(source, layout)
except UserFacingError as err:
    print(err)  # one line, no traceback
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error with a message that explains what went wrong and what to do."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of a third-party error's message (its type's name if it has none), cut to ``limit`` characters:
    what a user-facing message quotes of a library's exception."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


class DataSourceError(UserFacingError):
    """A data source could not be found, downloaded, verified or read."""


class BackboneError(UserFacingError):
    """A backbone handle or path could not be loaded or is not a feature extractor."""


class CacheWriteError(UserFacingError):
    """An artifact could not be written (for example the disk is full)."""


class ReadOnlyError(CacheWriteError):
    """This process serves a read-only cache (the hosted demo): nothing may be written or deleted there."""


class RunError(UserFacingError):
    """A run is missing, incomplete or cannot be used for what was asked."""


class ImageDecodeError(UserFacingError):
    """Uploaded bytes are not an image this app can read."""


class ConfigError(UserFacingError):
    """A setting (protocol, hyperparameter, URL parameter, CLI flag) is unknown or out of range."""


class BundleError(UserFacingError):
    """A bundle could not be made, downloaded, verified or installed."""
