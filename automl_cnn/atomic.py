"""Write a file so that a reader never sees it half written, whoever else writes it too.

Several workers may share one run directory (``summary.json``, ``config.json``,
``report.html``): each writes a temp file with a name no other writer uses (host, PID,
thread and a random suffix) in the same folder, then ``os.replace`` swaps it in. The last
writer wins whole; no writer deletes or truncates another's temp file.

Example:
    >>> write_text_atomic(Path("summary.json"), "{}")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

#: Temp files end with this; a leftover (its writer was killed) is safe to ignore or delete.
TMP_SUFFIX = ".tmp"


def temp_name(target: Path) -> Path:
    """A sibling of ``target`` that no other process or thread will pick."""
    tag = f"{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.{tag}{TMP_SUFFIX}")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-folder temp file + ``os.replace``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not publish an empty file after a crash
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode(encoding))


__all__ = ["TMP_SUFFIX", "temp_name", "write_bytes_atomic", "write_text_atomic"]
