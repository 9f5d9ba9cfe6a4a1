"""Several real worker processes on one study, one of them ``kill -9``ed mid-trial.

The topology of the deploy recipes (deploy/), as local processes: a PostgreSQL database, an
``mlflow server`` on 127.0.0.1 and 4 workers running the same ``--join`` command; and the
default journal storage in a shared run directory. The study must end with exactly N finished
trials, nothing RUNNING in Optuna or MLflow, and ``champion`` on the best trial.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from tracking_server import Server

from automl_cnn.results import ranked_trials
from automl_cnn.runners.liveness import LEASE_ATTR, LOST_ATTR
from automl_cnn.storage import make_storage

pytestmark = pytest.mark.slow
TRIALS = 6
STUDY = "digits-tiny"


@pytest.fixture
def pg_url(fresh_postgres: str) -> str:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    return fresh_postgres


def worker(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "search", "--space", "tiny", "--trials",
         str(TRIALS), "--no-progress", "--join", *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        cwd=log.parent)


def kill_mid_trial(victim: subprocess.Popen, storage_url: str, timeout: float = 400,
                   ready: Callable[[int], bool] = lambda _: True) -> int:
    """``kill -9`` the victim while it certainly runs a trial (one that is ``ready``): stop it,
    check that its leased trial is still RUNNING, then kill; returns the trial number."""
    storage = make_storage(storage_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            study = optuna.load_study(study_name=STUDY, storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.2)
            continue
        mine = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.system_attrs.get(LEASE_ATTR, {}).get("pid") == victim.pid]
        if mine and ready(mine[0]):
            os.kill(victim.pid, signal.SIGSTOP)
            still = study.get_trials(states=(TrialState.RUNNING,))
            if mine[0] in [t.number for t in still]:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                return mine[0]
            os.kill(victim.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the victim never ran a trial")


def wait_all(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    for proc, log in zip(procs, logs):
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"a worker hung:\n{log.read_text()[-3000:]}") from None
        assert proc.returncode == 0, log.read_text()[-3000:]


def check_study(storage_url: str, lost: int) -> optuna.Study:
    study = optuna.load_study(study_name=STUDY, storage=make_storage(storage_url))
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == TRIALS
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [lost]
    assert "died" in failed[0].system_attrs[LOST_ATTR]
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [lost]]
    # the retry replays what the lost attempt had sampled when it was killed
    assert len(retries) == 1 and failed[0].params.items() <= retries[0].params.items()
    return study


def test_journal_workers_survive_a_kill_and_refuse_a_mismatch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    url = f"journal:{run / 'study.journal'}"
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    procs = [worker(["--out", str(run), "--no-mlflow"], logs[0])]

    def start_the_others(_: int) -> bool:
        # Started together, the victim could draw only infeasible trials (no training, nothing
        # to catch it in) and finish first. Started alone it takes trial 0, the space's first
        # baseline, which trains; the other three start while it holds it, then it is killed.
        if len(procs) == 1:
            procs.extend(worker(["--out", str(run), "--no-mlflow"], log) for log in logs[1:])
        return True

    lost = kill_mid_trial(procs[0], url, ready=start_the_others)
    # Another space file (same ranges, other bytes) and image size: refused, naming both.
    space = tmp_path / "tiny.yaml"
    space.write_text((Path(__file__).parents[1] / "search_spaces" / "tiny.yaml").read_text()
                     + "\n# edited\n")
    odd_log = tmp_path / "odd.log"
    odd = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "search", "--space", str(space), "--join",
         "--storage", url, "--study-name", STUDY, "--out", str(tmp_path / "odd"),
         "--image-size", "16", "--no-mlflow", "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    odd_log.write_text(odd.stdout + odd.stderr)
    assert odd.returncode == 2, odd_log.read_text()
    err = " ".join(odd.stderr.split())
    for part in ("cannot join study 'digits-tiny'", "--image-size: stored None, given 16",
                 "input shape: stored [1, 8, 8], given [1, 16, 16]", "space (SHA-256"):
        assert part in err
    assert "Traceback" not in odd.stderr
    wait_all(procs[1:], logs[1:])
    check_study(url, lost)


def has_run(client: MlflowClient, number: int) -> bool:
    """Whether trial ``number`` has its MLflow run yet (so the kill leaves one RUNNING)."""
    experiment = client.get_experiment_by_name(STUDY)
    return experiment is not None and bool(client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`automl_cnn.trial` = '{number}'"))


def test_postgres_workers_with_an_mlflow_server(tmp_path: Path, pg_url: str) -> None:
    server = Server(tmp_path / "mlflow")
    try:
        run = tmp_path / "run"
        logs = [tmp_path / f"w{i}.log" for i in range(4)]
        args = ["--out", str(run), "--storage", pg_url, "--heartbeat", "10",
                "--tracking-uri", server.url]
        procs = [worker(args, logs[0])]
        client = MlflowClient(server.url)

        def ready(number: int) -> bool:
            # As for the journal: the victim starts alone and takes trial 0, a baseline that
            # trains; the others start while it holds it (started together, the victim could
            # finish first: failed once in CI). It is killed once its trial's run exists.
            if len(procs) == 1:
                procs.extend(worker(args, log) for log in logs[1:])
            return has_run(client, number)

        lost = kill_mid_trial(procs[0], pg_url, ready=ready)
        wait_all(procs[1:], logs[1:])
        study = check_study(pg_url, lost)
        experiment = client.get_experiment_by_name(STUDY)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
        killed = [r for r in runs if r.data.tags.get("automl_cnn.trial") == str(lost)]
        assert [r.info.status for r in killed] == ["KILLED"]
        champion = client.get_model_version_by_alias(STUDY, "champion")
        assert champion.tags["automl_cnn.trial"] == str(ranked_trials(study)[0].number)
    finally:
        server.stop()
    # A killed writer's half-written checkpoint folder, then --resume without --storage: the
    # run directory's recorded PostgreSQL study is continued, the leftover ignored.
    models = run / "models"
    models.mkdir(exist_ok=True)
    leftover = models / "trial-0099.tmp"
    leftover.mkdir()
    (leftover / "meta.json").write_text("{not json")
    resumed = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "search", "--space", "tiny", "--trials", "1",
         "--out", str(run), "--resume", "--no-mlflow", "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert not (run / "study.journal").exists()
    study = optuna.load_study(study_name=STUDY, storage=make_storage(pg_url))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == TRIALS + 1
    shutil.rmtree(run, ignore_errors=True)
