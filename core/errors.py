"""Errors raised by the library.

Every failure that a user can cause (bad file, bad option) is one of these, so
the CLI can turn it into one clear sentence and the right exit code instead of
a traceback:

* :class:`DataError` — the input data is wrong (unreadable image, truncated
  stream, malformed CSV row). CLI exit code 1.
* :class:`UsageError` — the request itself is wrong (unknown backbone, missing
  layer, incompatible options). CLI exit code 2.

The library names *parameters*, never command-line flags: a message marks each
parameter with :func:`param` (``f"{param('size')} must be at least 16"``).
``str(error)`` shows the parameter's name (``size must be at least 16``), for
library users; the CLI calls :meth:`SemcorrError.render` with its own mapping
of parameters to flags (``--size must be at least 16``).
"""

from __future__ import annotations

import re
from typing import Callable

#: Marks a parameter name inside an error message (ASCII unit separators; never typed by users).
_MARK = "\x1f"
_PARAM_RE = re.compile(_MARK + r"([^" + _MARK + r"]+)" + _MARK)


def param(name: str) -> str:
    """A parameter name marked for :meth:`SemcorrError.render` (``param("batch_size")``)."""
    return f"{_MARK}{name}{_MARK}"


def render_params(text: str, name_of: Callable[[str], str] | None = None) -> str:
    """``text`` with every :func:`param` mark replaced by ``name_of(name)`` (default: the name itself)."""
    return _PARAM_RE.sub(lambda m: (name_of or str)(m.group(1)), text)


class SemcorrError(Exception):
    """Base class of every error semcorr raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:
        return render_params(super().__str__())

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each marked parameter named by ``name_of`` (the CLI: its flag)."""
        return render_params(super().__str__(), name_of)


class DataError(SemcorrError):
    """The input data cannot be used (exit code 1)."""

    exit_code = 1


class UsageError(SemcorrError):
    """The command or call was asked for something impossible (exit code 2)."""

    exit_code = 2


class WeightsError(UsageError):
    """Model or backbone weights are missing, unverifiable or unsafe (exit code 2)."""
