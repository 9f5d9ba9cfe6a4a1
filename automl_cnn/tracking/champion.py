"""The registry's ``champion`` alias, moved only to a better model, whoever logs last.

Workers sharing a study log new bests at their own pace: a slower worker's model may be worse
than the one another worker registered meanwhile. So the alias moves by the project's rank
rule (:func:`automl_cnn.results.rank_key`: higher validation accuracy, then lower validation
loss, then the earlier trial), read from each version's tags:

1. before logging a model, :func:`beats_champion` compares it with the current champion (a
   model that cannot win is not logged at all);
2. after logging, :func:`crown_best` compares again and points the alias at the best version
   of all (a version another worker registered meanwhile included), so the last writer leaves
   the alias on the best model, not on its own.

Example:
    >>> beats_champion(client, "digits-default", val_acc=0.99, val_loss=0.03, trial=7)
    ...  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from automl_cnn.results import RankKey, rank_key

log = logging.getLogger(__name__)
CHAMPION = "champion"
TRIAL_TAG, ACC_TAG, LOSS_TAG = "automl_cnn.trial", "val_acc", "val_loss"


def version_key(version: Any) -> RankKey:
    """A registered version's rank key from its tags (unknown values rank last)."""
    tags = version.tags or {}
    try:
        acc = float(tags[ACC_TAG])
    except (KeyError, ValueError):
        acc = float("-inf")
    try:
        loss: float | None = float(tags[LOSS_TAG])
    except (KeyError, ValueError):
        loss = None
    return rank_key(acc, loss, int(tags.get(TRIAL_TAG, 2**31)))


def current_champion(client: MlflowClient, model: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException:  # no model yet, or no alias yet
        return None


def beats_champion(client: MlflowClient, model: str, *, val_acc: float,
                   val_loss: float | None, trial: int) -> bool:
    champion = current_champion(client, model)
    return champion is None or rank_key(val_acc, val_loss, trial) < version_key(champion)


def crown_best(client: MlflowClient, model: str) -> str | None:
    """Point ``champion`` at the best version of ``model``; returns that version."""
    versions = client.search_model_versions(f"name = '{model}'", max_results=10_000)
    if not versions:
        return None
    best = min(versions, key=version_key)
    champion = current_champion(client, model)
    if champion is None or str(champion.version) != str(best.version):
        client.set_registered_model_alias(model, CHAMPION, str(best.version))
    return str(best.version)


__all__ = ["ACC_TAG", "CHAMPION", "LOSS_TAG", "beats_champion", "crown_best", "version_key"]
