"""One exception type for mistakes a user can fix.

Command-line entry points catch `UserError`, print its message on one line and exit with
status 2, so bad input never shows a traceback. Library code raises it with a message that
names the problem and the fix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import wraps


class UserError(Exception):
    """Bad input from the user: the message names the problem and how to fix it."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a library's multi-line text."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class DiskFullError(UserError):
    """The disk (or a quota) is full: the message names the file, the space there and the least
    it needs. Nothing written before is lost (s4l_models/io.py writes atomically)."""


def exit_on_user_error(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so that a UserError, or a path it cannot use (permissions, a file
    where a folder belongs), becomes one line on stderr and exit status 2."""

    @wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 2
        except (PermissionError, NotADirectoryError, IsADirectoryError) as err:
            # a path the user gave (--out, --storage, --data-dir) cannot be used: their fix,
            # not a bug; everything written before was written atomically and stays
            where = err.filename if err.filename is not None else "a path"
            print(f"error: cannot use {where} ({err.strerror}); give a path this user can "
                  "read and write", file=sys.stderr, flush=True)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return 130

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are `UserError`s: one line and exit 2, like all bad input."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")
