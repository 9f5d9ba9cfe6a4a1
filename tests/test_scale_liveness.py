"""Many workers on one study: leases, lost trials, exact trial targets, join checks, atomic files.

Fast tests with trivial objectives on real journal storages in tmp_path; the end-to-end runs
with real worker processes, PostgreSQL and an MLflow server are in test_scale_workers.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl_cnn.atomic import write_text_atomic
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.record import RECORD_ATTR, TrialRecord
from automl_cnn.runners.join import check_join, differences
from automl_cnn.runners.liveness import (
    LEASE_ATTR, LOST_ATTR, Lease, LeaseKeeper, reap_lost_trials, why_lost)
from automl_cnn.runners.search import with_recorded_storage
from automl_cnn.runners.slots import count_slots, run_until_target, settle_target
from automl_cnn.runners.storage_lock import storage_lock
from automl_cnn.storage import make_storage


def _study(path: Path, name: str = "s") -> optuna.Study:
    url = f"journal:{path / 'study.journal'}"
    return optuna.create_study(study_name=name, storage=make_storage(url), load_if_exists=True)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1) + trial.suggest_int("n", 1, 4)


def test_atomic_writes_leave_no_temp_and_readers_never_see_half_files(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    payloads = [json.dumps({"writer": i, "pad": "x" * 200_000}) for i in range(4)]
    seen: list[str] = []

    def write(i: int) -> None:
        for _ in range(15):
            write_text_atomic(target, payloads[i])

    def read() -> None:
        for _ in range(200):
            if target.exists():
                seen.append(target.read_text())

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(text in payloads for text in seen)  # whole files only
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_lease_is_lost_when_its_local_process_is_gone_or_it_expired() -> None:
    host, now = socket.gethostname(), time.time()
    trial = optuna.trial.create_trial(state=TrialState.RUNNING)  # RUNNING, started now
    dead = Lease(host, _dead_pid(), 0, now + 600)
    alive = Lease(host, os.getppid(), 0, now + 600)
    elsewhere = Lease("another-host", 1, 0, now + 600)
    expired = Lease("another-host", 1, 0, now - 1)
    assert "died" in why_lost(dead, trial, now=now, host=host, grace=180)
    assert why_lost(alive, trial, now=now, host=host, grace=180) is None
    assert why_lost(elsewhere, trial, now=now, host=host, grace=180) is None
    assert "no sign of life" in why_lost(expired, trial, now=now, host=host, grace=180)
    assert why_lost(None, trial, now=now, host=host, grace=180) is None  # just started
    assert "no worker" in why_lost(None, trial, now=now + 200, host=host, grace=180)


def test_a_dead_workers_trial_is_failed_and_retried_exactly_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage = study._storage
    lease = Lease(socket.gethostname(), _dead_pid(), trial.number, time.time() + 600)
    storage.set_trial_system_attr(trial._trial_id, LEASE_ATTR, lease.__dict__)
    assert reap_lost_trials(study, interval=60) == [trial.number]
    assert reap_lost_trials(study, interval=60) == []  # already failed: nothing twice
    lost, retry = study.get_trials(deepcopy=False)
    assert lost.state == TrialState.FAIL and "died" in lost.system_attrs[LOST_ATTR]
    assert TrialRecord.from_trial(lost).outcome == "interrupted"
    assert retry.state == TrialState.WAITING and retry.params == lost.params
    assert retry.system_attrs["retry_history"] == [lost.number]
    assert LEASE_ATTR not in retry.system_attrs and RECORD_ATTR not in retry.user_attrs
    # the retry dies too: failed, but no third attempt (max_retry=1)
    again = study.ask()
    assert again.number == retry.number
    lease = Lease(socket.gethostname(), _dead_pid(), again.number, time.time() + 600)
    storage.set_trial_system_attr(again._trial_id, LEASE_ATTR, lease.__dict__)
    assert reap_lost_trials(study, interval=60) == [again.number]
    assert len(study.get_trials(deepcopy=False)) == 2
    assert count_slots(study.get_trials(deepcopy=False)).used == 1  # the given-up one counts


def test_a_lease_keeper_renews_until_the_block_ends(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    with LeaseKeeper(study._storage, trial._trial_id, trial.number, interval=0.2):
        first = study._storage.get_trial(trial._trial_id).system_attrs[LEASE_ATTR]["expires"]
        time.sleep(0.7)
        later = study._storage.get_trial(trial._trial_id).system_attrs[LEASE_ATTR]["expires"]
    assert later > first
    assert reap_lost_trials(study, interval=0.2) == []  # our own live process: kept


def test_workers_end_with_exactly_the_target_even_after_a_loss(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'study.journal'}"
    study = _study(tmp_path)
    settle_target(study, 12, mode="create")
    ghost = study.ask()  # a worker that died mid-trial
    ghost.suggest_float("x", 0, 1)
    study._storage.set_trial_system_attr(ghost._trial_id, LEASE_ATTR, Lease(
        socket.gethostname(), _dead_pid(), ghost.number, time.time() + 600).__dict__)

    def worker() -> None:
        mine = optuna.load_study(study_name="s", storage=make_storage(url))
        run_until_target(mine, _objective, lock=lambda: storage_lock(url), target=12,
                         interval=60)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    trials = study.get_trials(deepcopy=False)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 12
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [ghost.number]
    retry = [t for t in trials if t.system_attrs.get("retry_history")]
    assert len(retry) == 1 and retry[0].params["x"] == ghost.params["x"]


def test_resume_raises_the_target_and_join_keeps_it(tmp_path: Path) -> None:
    study = _study(tmp_path)
    assert settle_target(study, 5, mode="create") == 5
    assert settle_target(study, 5, mode="join") == 5
    study.optimize(_objective, n_trials=3)
    assert settle_target(study, 4, mode="resume") == 7  # 3 used + 4 more


def test_a_worker_with_other_settings_is_refused_naming_every_difference() -> None:
    stored = {"dataset": "digits", "classes": list("0123456789"), "input_shape": [1, 8, 8],
              "split_sizes": {"train": 1000}, "space": "tiny", "space_sha256": "a" * 64,
              "objectives": ["val_acc"], "image_size": None, "train_subset": None}
    given = {**stored, "dataset": "shapes", "space_sha256": "b" * 64, "image_size": 16}
    assert len(differences(stored, given)) == 3
    with pytest.raises(UserError) as err:
        check_join(stored, given, study="digits-tiny", where="journal:x")
    text = str(err.value)
    for part in ("dataset: stored digits, given shapes", "--image-size: stored None, given 16",
                 "space (SHA-256", "'tiny' sha256 aaaaaaaaaaaa", "--study-name"):
        assert part in text
    assert "\n" not in text
    check_join(stored, dict(stored), study="digits-tiny", where="journal:x")  # same: fine


def test_resume_without_storage_uses_the_recorded_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    url = "postgresql://postgres@127.0.0.1:5432/test"
    (run / "config.json").write_text(SearchConfig(out=str(run), storage=url).to_json())
    config = SearchConfig(out=str(run))
    assert with_recorded_storage(config, resume=True).storage_url == url
    assert with_recorded_storage(config, resume=False).storage is None


def test_heartbeat_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--heartbeat", "0", "--no-mlflow"]) == 2
    assert "--heartbeat must be" in capsys.readouterr().err


def test_a_worker_judged_dead_while_alive_goes_on_without_a_second_retry(tmp_path: Path) -> None:
    """A lease renewal that came too late: another worker fails and re-enqueues the trial; the
    slow worker's result is refused by the storage, and it simply takes the next trial."""
    url = f"journal:{tmp_path / 'study.journal'}"
    study = _study(tmp_path)
    settle_target(study, 3, mode="create")
    taken_over: list[int] = []

    def slow(trial: optuna.Trial) -> float:
        if not taken_over:
            study._storage.set_trial_system_attr(trial._trial_id, LEASE_ATTR, Lease(
                "another-host", 1, trial.number, time.time() - 1).__dict__)
            taken_over.extend(reap_lost_trials(study, interval=60))
        return _objective(trial)

    run_until_target(study, slow, lock=lambda: storage_lock(url), target=3, interval=60)
    trials = study.get_trials(deepcopy=False)
    assert taken_over == [0]
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    assert [t.number for t in trials if t.system_attrs.get("retry_history")] == [1]
