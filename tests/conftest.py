"""Shared test setup: keep every test's side effects out of the repository."""

from __future__ import annotations

import os
import uuid
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


PG_ADMIN = os.environ.get("AUTOML_CNN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (its URL), dropped afterwards. Skipped without a
    server, except in CI, where a missing server is a failure."""
    psycopg = pytest.importorskip("psycopg")
    name = f"automl_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
