"""Samplers (which architecture to try next) and pruners (which trial to stop early) by name.

Name -> constructor dicts, read by :class:`~automl_cnn.config.SearchConfig`'s checks and the
CLI's help; the constructors import optuna only when called, so ``--help`` stays fast.

Example:
    >>> sorted(PRUNERS)
    ['halving', 'hyperband', 'median', 'none', 'percentile']
    >>> make_sampler("random", seed=0)  # doctest: +ELLIPSIS
    <optuna.samplers._random.RandomSampler object at ...>
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automl_cnn.errors import UserError

if TYPE_CHECKING:
    import optuna


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    """TPE is the default: it handles the conditional, mixed categorical/numeric space natively
    (``group=True`` models each depth's parameters together) and learns from few trials.
    :class:`~automl_cnn.fast_tpe.CachedTPESampler` suggests exactly what optuna's TPESampler
    would, caching what depends only on finished trials (cheaper at 1,000 trials). It reuses
    Optuna internals, so it serves only the Optuna it was checked against; any other Optuna
    gets the stock sampler."""
    import optuna

    sampler = optuna.samplers.TPESampler
    if optuna.__version__.startswith(CACHED_TPE_CHECKED_ON):
        from automl_cnn.fast_tpe import CachedTPESampler as sampler  # type: ignore[assignment]
    return sampler(
        seed=seed, multivariate=True, group=True, n_startup_trials=10,
        constant_liar=True,  # workers sharing a study don't all try the same point
    )


#: The Optuna release whose TPESampler internals ``tests/test_fast_tpe.py`` proved the cached
#: sampler equal to; on any other release TPE is Optuna's own.
CACHED_TPE_CHECKED_ON = "5.0."


def _random(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)


def _qmc(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, scramble=True)


def _nsgaii(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


#: Sampler name -> constructor taking the seed. The first is the default.
SAMPLERS: dict[str, Callable[[int], Any]] = {
    "tpe": _tpe, "random": _random, "gp": _gp, "qmc": _qmc, "nsgaii": _nsgaii,
}


def _median(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    from automl_cnn.pruning import TrainedTrialsOnly

    # Start-up trials are trained ones: infeasible architectures report no epoch.
    return TrainedTrialsOnly(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))


def _percentile(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    from automl_cnn.pruning import TrainedTrialsOnly

    return TrainedTrialsOnly(optuna.pruners.PercentilePruner(25.0, n_startup_trials=5,
                                                             n_warmup_steps=1))


def _halving(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _hyperband(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                          reduction_factor=3)


def _no_pruner(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


#: Pruner name -> constructor taking the space's largest epoch budget (Hyperband's maximum
#: resource; pruners step in epochs). The first is the default.
PRUNERS: dict[str, Callable[[int], Any]] = {
    "median": _median, "percentile": _percentile, "halving": _halving,
    "hyperband": _hyperband, "none": _no_pruner,
}


def _lookup(kind: str, table: dict[str, Callable[[int], Any]], name: str) -> Callable[[int], Any]:
    try:
        return table[name]
    except KeyError:
        raise UserError(f"unknown {kind} {name!r}. Valid {kind}s: {', '.join(table)}.") from None


def make_sampler(name: str, *, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``; a :class:`UserError` listing the valid names otherwise."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return _lookup("sampler", SAMPLERS, name)(seed)


def make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    """The pruner called ``name``; a :class:`UserError` listing the valid names otherwise."""
    return _lookup("pruner", PRUNERS, name)(max_epochs)


__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler"]
