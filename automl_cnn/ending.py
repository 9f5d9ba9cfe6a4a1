"""Ending a process quickly once its work is done and written.

At exit CPython clears every module and runs its cyclic garbage collector over what is left,
more than once. A process that imported torch and Lightning tracks about a million objects, so
those passes take a second of wall time after the work is done: on the 2-core development
machine (``benchmarks/bench_exit.py``, medians of 5) the interpreter's exit alone took 0.44 s
after ``import torch``, 1.06 s after ``import lightning.pytorch`` and 1.37 s with MLflow too,
and a 5-trial search ended 1.26 s after writing its summary (2.20 s with MLflow), for nothing.
Every worker process of ``--jobs N`` paid the same before the parent saw it end.

:func:`end_quickly` collects the garbage there is, so its finalisers run as they would at
exit, then freezes every surviving object (:func:`gc.freeze`): the exit then leaves them to
the operating system instead of walking and freeing them. ``finally`` blocks, non-daemon
threads, ``atexit`` handlers (logging's flush, MLflow's, multiprocessing's queue feeders,
temporary folders) and the flush of stdout and stderr run as before. What is skipped is the
freeing of objects still alive at exit, as with :func:`os._exit`: a file object a module
holds open unflushed would lose its buffer, and a CUDA context is released by the driver.
CPython never promised those finalisers at exit, and this package opens no file it does not
close where it writes (``tests/test_ending.py`` checks what must still happen).
"""

from __future__ import annotations

import gc


def end_quickly() -> None:
    """Collect garbage now (its finalisers run), then freeze what survives so the
    interpreter's exit does not walk it again. Call it as the last thing a process does
    (:func:`automl_cnn.cli.entry`, a worker process after its work), never in one that goes
    on working: frozen objects are never collected."""
    gc.collect()
    gc.freeze()


__all__ = ["end_quickly"]
