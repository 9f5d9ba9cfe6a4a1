"""Passwords kept out of everything the tool shows or stores.

A storage or tracking URL may carry a password (``postgresql://me:pw@db/optuna``). The real URL
lives only in memory and in what the user typed; every message, file, study attribute, MLflow
param and printed command gets :func:`without_password`'s form instead. Imports nothing heavy.

Example:
    >>> without_password("postgresql://me:s3cret@db:5432/optuna")
    'postgresql://me:***@db:5432/optuna'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
#: ``scheme://user:password@`` — the password runs to the last ``@`` before the host part.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<pw>[^/?#\s]*)@")
#: ``?password=...`` / ``&password=...`` in a query string (libpq and most drivers take it).
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<pw>[^&#\s]*)", re.IGNORECASE)


def without_password(url: str) -> str:
    """``url`` fit to print or store: any password replaced by ``***``; other text unchanged.

    Example:
        >>> without_password("postgresql://db/optuna?user=me&password=pw")
        'postgresql://db/optuna?user=me&password=***'
        >>> without_password("journal:runs/x/study.journal")
        'journal:runs/x/study.journal'
    """
    url = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], url)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["pw"] else m[0], url)


def has_masked_password(url: str | None) -> bool:
    """Whether ``url`` is a stored form whose password was replaced (it cannot connect)."""
    matches = [*_USERINFO.finditer(url or ""), *_QUERY.finditer(url or "")]
    return any(m["pw"] == MASK for m in matches)


def require_password(url: str, *, where: str, fix: str) -> str:
    """``url`` itself, or a :class:`UserError` when it is a stored form whose password was
    masked (``where`` recorded it; ``fix`` says how to pass the real one)."""
    if has_masked_password(url):
        from automl_cnn.errors import UserError

        raise UserError(f"{where} records the storage {url} without its password (automl-cnn "
                        f"never stores one). {fix}")
    return url


def passwords(url: str) -> list[str]:
    """The passwords in ``url`` (as written and URL-decoded), to scrub from other text."""
    found = [m["pw"] for m in _USERINFO.finditer(url)] + [m["pw"] for m in _QUERY.finditer(url)]
    return [p for raw in found if raw and raw != MASK for p in {raw, unquote(raw)}]


def scrub(text: str, *urls: str | None) -> str:
    """``text`` (e.g. a database driver's error) with the URLs' passwords masked, wherever
    they appear, and any URL in it shown :func:`without_password`.

    Example:
        >>> scrub("login for me:s3cret failed", "postgresql://me:s3cret@db/x")
        'login for me:*** failed'
    """
    for url in urls:
        for secret in passwords(url or ""):
            text = text.replace(secret, MASK)
    return without_password(text)


__all__ = ["MASK", "has_masked_password", "passwords", "require_password", "scrub",
           "without_password"]
