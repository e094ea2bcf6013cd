"""The one base class of the project's own errors.

Every error the project raises on purpose (bad input, a missing file, a refused checkpoint)
derives from `SartmError`, and its message is written for the user: the file, the key, what to
do. The `sartm` command prints such an error as one line, and a traceback only with `--debug`.
"""

from __future__ import annotations


class SartmError(Exception):
    """An error whose message is meant for the user, not a bug."""
