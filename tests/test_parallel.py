"""``--jobs N``: worker processes sharing one study; exact trial counts; Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.device import resolve_device
from automl_cnn.errors import UserError
from automl_cnn.runners.parallel import plan_workers, usable_cores
from automl_cnn.storage import make_storage

TrialState = optuna.trial.TrialState


def load(run_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=make_storage(f"journal:{run_dir / 'study.journal'}"))


def test_worker_plan_splits_threads_and_never_exceeds_the_trials() -> None:
    cpu = resolve_device("cpu")
    plan = plan_workers(SearchConfig(trials=10, jobs=3), cpu)
    assert plan.devices == ("cpu", "cpu", "cpu")
    assert plan.threads == max(1, usable_cores() // 3)
    assert plan_workers(SearchConfig(trials=2, jobs=8), cpu).count == 2
    assert plan_workers(SearchConfig(trials=10, jobs=None), cpu).count >= 1


def test_workers_sharing_a_gpu_count_as_their_measured_speedup_not_their_number() -> None:
    # What sizes a search under --jobs N: N workers on one GPU train GPU_SHARING's multiple of
    # one worker's images/s (less than N: they queue on the card), workers on different GPUs
    # add up, and workers on a CPU share its cores (no gain). Each worker's own speed, which
    # times its rungs, is that total split between the workers of the most crowded device.
    from automl_cnn.runners.parallel import GPU_SHARING, WorkerPlan, gpu_sharing

    one_gpu = dict(GPU_SHARING)
    assert gpu_sharing(1) == 1.0 and gpu_sharing(0) == 1.0
    assert all(gpu_sharing(k) == v for k, v in GPU_SHARING)
    assert gpu_sharing(100) == GPU_SHARING[-1][1]  # flat past the last point measured
    assert all(a < b for (_, a), (_, b) in zip(GPU_SHARING, GPU_SHARING[1:]))  # more is faster
    assert all(v <= k for k, v in GPU_SHARING)  # but never more than k workers' worth
    assert WorkerPlan(("cuda:0",) * 4, 4).speedup == one_gpu[4]
    assert WorkerPlan(("cuda:0",) * 4, 4).share == one_gpu[4] / 4
    two = WorkerPlan(("cuda:0", "cuda:1", "cuda:0", "cuda:1"), 4)
    assert two.speedup == 2 * one_gpu[2] and two.share == one_gpu[2] / 2
    assert WorkerPlan(("cpu", "cpu"), 1).speedup == 1.0
    assert WorkerPlan(("cpu", "cpu"), 1).share == 0.5
    assert WorkerPlan(("cuda:0",), 16).speedup == WorkerPlan(("cpu",), 2).speedup == 1.0


def test_jobs_auto_on_a_gpu_is_bounded_by_its_memory_its_load_and_the_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The GPU branch of --jobs auto, on a machine without one: the card's free memory and
    # load are what torch.cuda and NVML would report.
    import torch

    from automl_cnn.device import Device
    from automl_cnn.runners import parallel

    gib = 2**30
    free = {"bytes": 80 * gib}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free["bytes"], 80 * gib))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(parallel, "gpu_busy_percent", lambda index: 0)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    one = Device("cuda:0", "gpu", "bf16-mixed")
    assert parallel.auto_jobs(one) == parallel.MAX_PER_GPU == 8
    monkeypatch.setattr(parallel, "usable_cores", lambda: 6)
    assert parallel.auto_jobs(one) == 3  # a core for every second worker's launches
    both = Device("cuda", "gpu", "bf16-mixed", all_gpus=True)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.auto_jobs(both) == 2  # never fewer than one per GPU
    monkeypatch.setattr(parallel, "usable_cores", lambda: 64)
    assert parallel.auto_jobs(both) == 16
    free["bytes"] = 10 * gib  # 3 GiB a worker
    assert parallel.auto_jobs(one) == 3
    monkeypatch.setattr(parallel, "gpu_busy_percent", lambda index: 90)  # another job's card
    assert parallel.auto_jobs(one) == 1


def test_another_cards_sharing_table_comes_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from automl_cnn.runners.parallel import SHARING_ENV, WorkerPlan, gpu_sharing

    monkeypatch.setenv(SHARING_ENV, "2:1.5, 4:2")
    assert gpu_sharing(2) == 1.5 and gpu_sharing(3) == 1.75 and gpu_sharing(8) == 2.0
    assert WorkerPlan(("cuda:0",) * 4, 4).speedup == 2.0
    for bad in ("4:5", "two:1.5", "2:0", "1:2", "2-1.5"):
        monkeypatch.setenv(SHARING_ENV, bad)
        with pytest.raises(UserError, match=f"{SHARING_ENV}=.*{bad}.*k:multiple"):
            gpu_sharing(2)
    # From the command line, on any device: one paragraph, no traceback, nothing written.
    monkeypatch.setenv(SHARING_ENV, "4:9")
    run = tmp_path / "run"
    assert main(["search", "--trials", "2", "--space", "tiny", "--no-mlflow", "--device", "cpu",
                 "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{SHARING_ENV}='4:9'" in err and "Traceback" not in err and not run.exists()


def test_bad_jobs_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="--jobs must be"):
        SearchConfig(jobs=0).check()
    with pytest.raises(SystemExit) as exc:
        main(["search", "--jobs", "many"])
    assert exc.value.code == 2
    assert "auto" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_run_exactly_the_trials_asked_for(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["search", "--trials", "5", "--space", "tiny", "--jobs", "2", "--out", str(out),
                 "--tracking-uri", uri, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.count("Study digits-tiny:") == 1  # one summary, from the parent
    assert "Test accuracy of the final model" in captured.out  # the winner, refit once
    assert "GPU available" not in captured.err + captured.out  # no Lightning banners
    study = load(out, "digits-tiny")
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(5))  # exactly 5, no duplicate numbers
    assert all(t.state.is_finished() for t in study.trials)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 5 and summary["test"] is not None
    assert (out / "report.html").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("digits-tiny")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    parents = [r for r in runs if r.data.tags.get("automl_cnn.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    trial_runs = [r for r in children if r.data.tags.get("automl_cnn.role") == "trial"]
    assert len(children) == len(trial_runs) + 1  # and the winner's final fit
    assert len(trial_runs) == 5


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (read from /proc; zombies count as gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if fields.get("PPid", "").strip() == str(pid) and not fields["State"].startswith("Z"):
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return not (Path("/proc") / str(pid) / "status").read_text().split("State:\t")[1] \
            .startswith("Z")
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_leaves_no_running_trial(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "search", "--trials", "200", "--space", "tiny",
         "--jobs", "2", "--no-mlflow", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    models = out / "models"
    while time.time() < deadline and not (models.exists() and any(models.iterdir())):
        time.sleep(0.2)  # at least one trial finished: both workers are up
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT)  # to the parent alone, as `kill -INT` would
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert len(workers) >= 2  # (plus, perhaps, multiprocessing's resource tracker)
    end = time.time() + 15  # multiprocessing's resource tracker leaves once it sees EOF
    while time.time() < end and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]
    assert stdout.count("Study digits-tiny:") == 1
    assert "Resume with" in stdout and "--resume" in stdout
    assert "Traceback" not in stderr
    study = load(out, "digits-tiny")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states  # (an interrupted trial is queued again: WAITING)
    assert 1 <= len(states) < 200
    assert len({t.number for t in study.trials}) == len(states)
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


@pytest.mark.slow
def test_workers_climb_the_parents_ladder(tmp_path: Path) -> None:
    from automl_cnn.data import load_dataset
    from automl_cnn.ladder import Ladder, Rung
    from automl_cnn.record import Outcome, records
    from automl_cnn.runners.parallel import run_workers
    from automl_cnn.runners.search import open_or_create
    from automl_cnn.runners.signals import StopFlag
    from automl_cnn.search_spaces import load_space

    config = SearchConfig(trials=8, space="tiny", jobs=2, mlflow=False, sampler="random",
                          out=str(tmp_path / "run"))
    study = open_or_create(config, load_space("tiny"), load_dataset("digits", seed=0),
                           resume=False)
    ladder = Ladder((Rung(0, 300, 2), Rung(1, 900, 2)), eta=3)
    codes = run_workers(config, plan_workers(config, resolve_device("cpu")), stop=StopFlag(),
                        ladder=ladder, images_per_second=2000.0)
    assert codes == [0, 0]
    trained = [r for r in records(study) if r.outcome != Outcome.INFEASIBLE]
    assert len([r for r in records(study) if r.outcome != Outcome.RUNNING]) == 8
    assert trained and all(r.fidelity is not None for r in trained)  # every trial climbed
    assert {r.fidelity.train_images for r in trained} <= {300, 900}
    assert any(r.fidelity.rung == 1 for r in trained)  # someone was promoted
    # Two workers read and queue late promotions through the one study: none trains twice.
    late = [r.promotion.source for r in trained if r.promotion is not None and r.history]
    assert len(late) == len(set(late))
    # Trained in the workers, not the parent. (Not 'by both': a spawned worker can still be
    # importing torch when the other has finished all 8 small trials; failed once in CI.)
    pids = {r.worker.pid for r in trained}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
