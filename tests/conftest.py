"""Shared test setup: keep every test's side effects out of the repository."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Searches that track by default write to a throwaway MLflow store, never ./mlflow.db."""
    if "MLFLOW_TRACKING_URI" not in os.environ:
        db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
