"""A :class:`optuna.samplers.TPESampler` that caches what depends only on finished trials.

At 1,000 trials the stock grouped, multivariate TPE spends most of a trial redoing, for every
past trial, its fold into the group decomposition and, once per group, its "below"/"above"
split and its internal values. Finished trials (COMPLETE, PRUNED, FAIL) never change, so
:class:`CachedTPESampler` does that once per trial and study (keyed by storage and study id):

* Group decomposition: folding is idempotent (after a fold each group lies inside or outside
  the trial's parameter set; later folds only split groups), so only trials not yet folded
  are folded, in the stock order, into the parent's own decomposition object. Names inside a
  group may come out in another order; every reader sorts them.
* Split: the stock split of the finished trials depends only on them (same objects, same
  order: the key is their ids, held alive by the cached lists) and ``n_below``; it is done
  once per sampled trial, not per group, from cached scores. RUNNING trials (constant liar)
  change: they are re-read every time and merged into "above" by number, as stock sorts.
* Internal values: a numpy column store per group (names and distributions), filled once per
  finished trial with what ``to_internal_repr`` returns, typed as ``np.asarray`` types it,
  gathered in the stock order; RUNNING trials' values are computed afresh, as stock does.

An entry serves only the very :class:`~optuna.trial.FrozenTrial` (or an equal one) it was
built from. Storage reads, parzen estimators, random state and acquisition are the parent's,
called in the same order on equal inputs: the suggestions are the stock ones, bit for bit.
Left to the parent: multi-objective studies, columns mixing Python types, unhashable
distributions, storages that cannot be weakly referenced.
"""

from __future__ import annotations

import threading
import weakref
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.samplers._tpe import sampler as _stock
from optuna.search_space.group_decomposed import _SearchSpaceGroup
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

_Row = tuple[Any, ...] | None
_RUNNING = TrialState.RUNNING
_number = attrgetter("number")
_MINIMIZE = StudyDirection.MINIMIZE


def _row(params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> _Row:
    """The stock ``_get_internal_repr``'s values for one trial, or None if it lacks a param."""
    if not search_space.keys() <= params.keys():
        return None
    return tuple(dist.to_internal_repr(params[name]) for name, dist in search_space.items())


class _Columns:
    """A group's internal values for each indexed finished trial, typed as np.asarray does."""

    def __init__(self, search_space: dict[str, BaseDistribution]) -> None:
        self.space = search_space
        self.n = 0
        self.has = np.zeros(16, dtype=bool)  # the trial has every param of the group
        self.cols: list[np.ndarray] = []
        self.types: tuple[type, ...] | None = None
        self.exact = True  # False once a column mixes Python types: the parent handles it

    def extend(self, order: list[FrozenTrial]) -> None:
        """Add the rows of the trials indexed since the last call."""
        if len(order) > len(self.has):
            grow = 2 * len(order) - len(self.has)
            self.has = np.concatenate([self.has, np.zeros(grow, dtype=bool)])
            self.cols = [np.concatenate([c, np.zeros(grow, dtype=c.dtype)]) for c in self.cols]
        for pos in range(self.n, len(order)):
            row = _row(order[pos].params, self.space)
            if row is None:
                continue
            if self.types is None:
                self.types = tuple(map(type, row))
                self.cols = [np.zeros(len(self.has), dtype=np.asarray([v]).dtype) for v in row]
            self.exact = self.exact and tuple(map(type, row)) == self.types
            if not self.exact:
                break
            self.has[pos] = True
            for col, value in zip(self.cols, row, strict=True):
                col[pos] = value
        self.n = len(order)

    def gather(self, pos: np.ndarray, running: list[Any]) -> dict[str, np.ndarray] | None:
        """Observations at ``pos`` (-1: RUNNING, see ``running``), or None: use the parent."""
        keep = pos >= 0
        keep[keep] = self.has[pos[keep]]
        extra = [(i, row) for i, row in running if row is not None]
        if any(tuple(map(type, row)) != self.types for _, row in extra):
            return None
        keep[[i for i, _ in extra]] = True
        if not keep.any():
            return {name: np.asarray([]) for name in self.space}
        arrays = [col[pos[keep]] for col in self.cols]
        where = np.cumsum(keep) - 1
        for i, row in extra:
            for array, value in zip(arrays, row, strict=True):
                array[where[i]] = value
        return dict(zip(self.space, arrays, strict=True))


class _StudyCache:
    """What one sampler has computed for one study (keyed by ``_trial_id``)."""

    def __init__(self) -> None:
        self.folded: dict[int, FrozenTrial] = {}  # folded into the group decomposition
        self.scores: dict[int, tuple[FrozenTrial, tuple[int, Any]]] = {}  # split part, key
        self.index: dict[int, tuple[FrozenTrial, int]] = {}  # trial -> position in order
        self.order: list[FrozenTrial] = []
        self.columns: dict[tuple[Any, ...], _Columns] = {}
        # ((ids of the finished trials, n_below), below, above, positions, above numbers)
        self.split: tuple[Any, ...] = ((),)
        self.lists: dict[int, tuple[list[FrozenTrial], np.ndarray]] = {}  # last split's

    def position(self, trial: FrozenTrial) -> int:
        hit = self.index.get(trial._trial_id)
        if hit is None or (hit[0] is not trial and hit[0] != trial):
            hit = self.index[trial._trial_id] = (trial, len(self.order))
            self.order.append(trial)
        return hit[1]

    def positions(self, trials: list[FrozenTrial]) -> np.ndarray:
        return np.array([self.position(t) if t.state.is_finished() else -1 for t in trials],
                        dtype=np.intp)


class CachedTPESampler(TPESampler):
    """TPESampler (same arguments, same suggestions), caching as the module docstring says."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.__setstate__({})

    def __getstate__(self) -> dict[str, Any]:  # pickled without its caches
        return {k: v for k, v in self.__dict__.items() if k not in ("_caches", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._caches = weakref.WeakKeyDictionary[Any, dict[int, _StudyCache]]()
        self._lock = threading.RLock()  # the caches, when threads share the sampler

    def _cache(self, study: Study) -> _StudyCache | None:
        """This study's cache (by storage object and study id), or None to use the parent."""
        try:
            return self._caches.setdefault(study._storage, {}).setdefault(
                study._study_id, _StudyCache())
        except TypeError:  # a storage that cannot be weakly referenced
            return None

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        cache = self._cache(study)
        if not (self._group and cache is not None and self._is_multivariate(study)):
            return super().infer_relative_search_space(study, trial)
        self._search_space_group = self._fold(study, cache)
        search_space: dict[str, BaseDistribution] = {}
        for sub_space in self._search_space_group.search_spaces:
            for name, distribution in sorted(sub_space.items()):
                if not distribution.single():
                    search_space[name] = distribution
        return search_space

    def _fold(self, study: Study, cache: _StudyCache) -> _SearchSpaceGroup:
        """The stock ``_GroupDecomposedSearchSpace.calculate``, folding unseen trials only."""
        decomposed = self._group_decomposed_search_space
        assert decomposed is not None
        if decomposed._study_id is None:
            decomposed._study_id = study._study_id
        elif decomposed._study_id != study._study_id:
            raise ValueError("`_GroupDecomposedSearchSpace` cannot handle multiple studies.")
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=True)
        with self._lock:
            for trial in trials:
                if cache.folded.get(trial._trial_id) is not trial:
                    decomposed._search_space.add_distributions(trial.distributions)
                    cache.folded[trial._trial_id] = trial
            group = _SearchSpaceGroup()
            # The stock code deep-copies; the distributions are never mutated, the dicts are.
            group._search_spaces = [dict(s) for s in decomposed._search_space.search_spaces]
        return group

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The stock ``_sample``, with the cached split."""
        cache = self._cache(study)
        if cache is None or study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        states = [TrialState.COMPLETE, TrialState.PRUNED] + [_RUNNING] * self._constant_liar
        trials = study._get_trials(deepcopy=False, states=states,
                                   use_cache=not self._constant_liar)
        if self._gamma is None:
            self._gamma = _stock.default_gamma
        below_trials, above_trials = self._split(study, cache, trials, trial.number, self._gamma)
        mpe_below = self._build_parzen_estimator(
            study, search_space, below_trials, handle_below=True)
        mpe_above = self._build_parzen_estimator(
            study, search_space, above_trials, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _split(
        self, study: Study, cache: _StudyCache, trials: list[FrozenTrial], number: int,
        gamma: Any,
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """The stock constant-liar filter and ``_split_trials``, the finished part cached."""
        finished = [t for t in trials if t.state != _RUNNING]
        # The current trial is the only one with its number, and it is RUNNING.
        running = sorted((t for t in trials if t.state == _RUNNING and t.number != number),
                         key=_number)
        n_below = gamma(len(finished))
        key = (tuple(map(id, finished)), n_below)
        with self._lock:
            split = cache.split
            if split[0] != key:
                below, above = self._split_finished(study, cache, finished, n_below)
                split = cache.split = (key, below, above, cache.positions(below),
                                       cache.positions(above), [t.number for t in above])
            _, below, above, below_pos, above_pos, numbers = split
            below, above = list(below), list(above)
            if running:  # merged as the stock code's sort by number does
                at = np.searchsorted(numbers, [t.number for t in running])
                for i, t in zip(at[::-1].tolist(), running[::-1], strict=True):
                    above.insert(i, t)
                above_pos = np.insert(above_pos, at, -1)
            cache.lists = {id(below): (below, below_pos), id(above): (above, above_pos)}
        return below, above

    def _split_finished(
        self, study: Study, cache: _StudyCache, finished: list[FrozenTrial], n_below: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """The stock split of the finished trials (single objective), from cached scores."""
        parts: tuple[list[Any], ...] = ([], [], [])  # complete, pruned, infeasible: (key, t)
        for trial in finished:
            which, key = self._score(study, cache, trial)
            parts[which].append((key, trial))
        for i, part in enumerate(parts):  # stable, on the stock order and keys, as stock sorts
            part.sort(key=itemgetter(0), reverse=not i and study.direction != _MINIMIZE)
        below: list[FrozenTrial] = []
        above: list[FrozenTrial] = []
        for part in parts:
            part_below = part[:min(n_below, len(part))]
            below += [t for _, t in part_below]
            above += [t for _, t in part[min(n_below, len(part)):]]
            n_below = max(0, n_below - len(part_below))
        below.sort(key=_number)
        above.sort(key=_number)
        return below, above

    @staticmethod
    def _score(study: Study, cache: _StudyCache, trial: FrozenTrial) -> tuple[int, Any]:
        """Which part of the stock split a finished trial goes to, and its sort key there."""
        hit = cache.scores.get(trial._trial_id)
        if hit is None or hit[0] is not trial:
            infeasible = _stock._get_infeasible_trial_score(trial)
            if infeasible > 0:
                score: tuple[int, Any] = (2, infeasible)
            elif trial.state == TrialState.COMPLETE:
                score = (0, trial.value)
            elif trial.state == TrialState.PRUNED:
                score = (1, _stock._get_pruned_trial_score(trial, study))
            else:
                raise AssertionError(f"unexpected state {trial.state}")
            hit = cache.scores[trial._trial_id] = (trial, score)
        return hit[1]

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        cache, observations = self._cache(study), None
        try:  # the group's column store, keyed by its names and distributions
            key = tuple(search_space.items())
            columns = None if cache is None else cache.columns.get(key)
        except TypeError:  # a distribution that cannot be hashed
            cache = None
        if cache is not None:
            with self._lock:
                if columns is None:
                    columns = cache.columns[key] = _Columns(dict(search_space))
                hit = cache.lists.get(id(trials))  # a list from _split: positions known
                pos = hit[1] if hit is not None and hit[0] is trials else cache.positions(trials)
                columns.extend(cache.order)
                running = [(i, _row(self._get_params(trials[i], study), search_space))
                           for i in np.flatnonzero(pos < 0).tolist()]
                observations = columns.gather(pos, running) if columns.exact else None
        if observations is None:
            return super()._get_internal_repr(trials, search_space, study)
        return observations
