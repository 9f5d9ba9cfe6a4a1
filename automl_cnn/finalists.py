"""Near-ties are averaged, not picked by chance: the finalists of a search and the ensemble the
final fit makes of them.

On a small validation split, the order at the top of a search is mostly luck. Digits has 359
validation images, so one image is 0.28 points: on seed 2 of the 100-trial search a 1-block
net with a 3-pixel receptive field won by one image, and its final model tested 98.05 %. The
trials whose score is within the split's noise of the best (:func:`noise_band`: two binomial
standard errors) are the *finalists*. Cross-checking them on two more folds did not settle it
(seed 1's clear cross-validated winner still tested 98.33 %: a finalist's test score moved by
up to 1.1 points with its training seed alone), but averaging them did: the final fits of the
top 2-4 finalists, averaged, tested 98.89-99.44 % on both seeds where the single winners
tested 98.05 and 98.33 % (README, benchmarks). So the final fit trains up to ``--ensemble``
finalists (default 3) and hands over their average (:class:`automl_cnn.network.Ensemble`);
with one finalist, or a hard limit on the model's size or speed (an ensemble costs each
member's parameters and time), it trains the best alone, as before.

Example:
    >>> round(noise_band(0.9972, 359), 4), round(noise_band(0.93, 3600), 4)
    (0.0078, 0.0085)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automl_cnn.config import SearchConfig
    from automl_cnn.record import TrialRecord


def noise_band(acc: float, n_val: int) -> float:
    """Two standard errors of an accuracy measured on ``n_val`` images (the error rate
    smoothed as (errors + 1) / (n + 2), so a perfect score still has a band)."""
    errors = (1.0 - acc) * n_val
    p = (errors + 1.0) / (n_val + 2.0)
    return 2.0 * math.sqrt(p * (1.0 - p) / max(1, n_val))


def pick_finalists(ranked: Sequence[TrialRecord], *, n_train: int, n_val: int,
                   most: int) -> list[TrialRecord]:
    """The ranked trials (best first) that trained the whole training split at their own
    epochs, held out from validation, and score within :func:`noise_band` of the best — at
    most ``most``, the best first. Just the best when it is not such a trial (a ladder's top
    rung, an in-sample score): its rivals did not train like it, so nothing ties with it."""
    if not ranked:
        return []
    full = [r for r in ranked if _full(r, n_train)]
    if not full or full[0] is not ranked[0]:
        return [ranked[0]]
    best = float(full[0].val_acc or 0.0)
    near = [r for r in full if float(r.val_acc or 0.0) >= best - noise_band(best, n_val)]
    return near[:max(1, most)]


def ensemble_size(config: SearchConfig) -> int:
    """How many finalists the final model may average: ``--ensemble``, or 1 where a hard
    limit on the model (parameters, FLOPs, latency, memory) or a latency objective is set —
    an ensemble costs the sum of its members — or with several objectives (their Pareto front
    has no single best to average near)."""
    limited = config.max_params is not None or config.max_flops is not None or (
        config.max_memory_mb is not None)
    if limited or config.measures_latency or config.multi_objective:  # latency limit or goal
        return 1
    return config.ensemble


def _full(record: TrialRecord, n_train: int) -> bool:
    spec, fidelity = record.spec, record.fidelity
    return (spec is not None and record.val_acc is not None and not record.in_sample
            and (fidelity is None or fidelity.rung in (None, 0) and not fidelity.whole
                 and fidelity.epochs in (None, spec.train.epochs)
                 and fidelity.train_images in (None, n_train))
            and record.epochs_trained == spec.train.epochs)


__all__ = ["ensemble_size", "noise_band", "pick_finalists"]
