-- The Optuna study lives in the database POSTGRES_DB (optuna); MLflow gets its own, since both
-- keep an alembic_version table.
CREATE DATABASE mlflow OWNER automl;
