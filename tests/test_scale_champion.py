"""The ``champion`` alias moves only to a better model, by the rank rule, whoever writes last."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from automl_cnn.tracking.champion import CHAMPION, beats_champion, crown_best


def _version(client: MlflowClient, name: str, trial: int, acc: float, loss: float) -> str:
    version = client.create_model_version(name, source=f"file:///nowhere/{trial}", tags={
        "automl_cnn.trial": str(trial), "val_acc": f"{acc:.6f}", "val_loss": f"{loss:.6f}"})
    return str(version.version)


def test_the_alias_follows_the_rank_rule_not_the_last_writer(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    assert beats_champion(client, "m", val_acc=0.5, val_loss=1.0, trial=0)  # no champion yet
    _version(client, "m", 1, 0.90, 0.30)
    best = _version(client, "m", 2, 0.95, 0.20)
    assert crown_best(client, "m") == best
    # a slower worker's worse model arrives last: it neither wins the comparison nor the alias
    assert not beats_champion(client, "m", val_acc=0.93, val_loss=0.10, trial=3)
    _version(client, "m", 3, 0.93, 0.10)
    assert crown_best(client, "m") == best
    # a tie on accuracy goes to the lower validation loss
    assert beats_champion(client, "m", val_acc=0.95, val_loss=0.15, trial=4)
    tie = _version(client, "m", 4, 0.95, 0.15)
    crown_best(client, "m")
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == tie
