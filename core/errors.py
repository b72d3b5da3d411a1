"""Errors raised by the library.

Every failure that a user can cause (bad file, bad option) is one of these, so
the CLI can turn it into one clear sentence and the right exit code instead of
a traceback:

* :class:`DataError` — the input data is wrong (unreadable image, truncated
  stream, malformed CSV row). CLI exit code 1.
* :class:`UsageError` — the request itself is wrong (unknown backbone, missing
  layer, incompatible options). CLI exit code 2.
"""


class SemcorrError(Exception):
    """Base class of every error semcorr raises on purpose."""

    exit_code = 1


class DataError(SemcorrError):
    """The input data cannot be used (exit code 1)."""

    exit_code = 1


class UsageError(SemcorrError):
    """The command or call was asked for something impossible (exit code 2)."""

    exit_code = 2


class WeightsError(UsageError):
    """Model or backbone weights are missing, unverifiable or unsafe (exit code 2)."""
