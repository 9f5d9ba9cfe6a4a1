"""User-facing errors: the CLI prints their message as one paragraph and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done; the message says what and how to fix it."""

    exit_code = 2
