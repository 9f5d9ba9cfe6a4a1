"""Shared test setup: keep every test's side effects out of the repository."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the whole session in a scratch folder, tracking to a throwaway MLflow store.

    Searches write ``runs/`` and MLflow writes local artifacts (``./mlruns``) relative to the
    working directory; neither may land in the repository.
    """
    home = tmp_path_factory.mktemp("work")
    previous = os.getcwd()
    os.chdir(home)
    added = "MLFLOW_TRACKING_URI" not in os.environ
    if added:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    yield
    os.chdir(previous)
    if added:
        del os.environ["MLFLOW_TRACKING_URI"]
