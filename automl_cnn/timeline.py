"""Where a command's wall time goes: with ``AUTOML_CNN_TIMELINE=FILE`` set, the command and every
worker process it starts append ``<unix time> <pid> <event>`` lines to FILE at the points that
bound start-up, the search, the final fit and the report (``benchmarks/bench_timeline.py``
reads them back). Unset, a mark costs one environment lookup.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> os.environ[ENV] = path; mark("hello"); del os.environ[ENV]
    >>> open(path).read().split()[2]
    'hello'
"""

from __future__ import annotations

import os
import threading
import time

ENV = "AUTOML_CNN_TIMELINE"
#: Set when this process trains its first step (:mod:`automl_cnn.training`): work that can
#: wait, such as MLflow's set-up (:mod:`automl_cnn.tracking.deferred`), starts then.
first_step = threading.Event()


def mark(event: str) -> None:
    """Append ``event`` with the time and this process's id (one short line: an append of it
    is atomic, so processes writing at once do not interleave)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{time.time():.4f} {os.getpid()} {event}\n")


__all__ = ["ENV", "first_step", "mark"]
