"""load_best / top_architectures against a real search on digits (tiny space)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file

import automl_cnn
from automl_cnn import ArchSpec, build_model
from automl_cnn.api import latest_run_dir, open_source
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.runners.search import run_search
from automl_cnn.record import DatasetInfo, read_study_info, write_study_info
from automl_cnn.storage import make_storage
from automl_cnn.tracking import Tracker


class BestOutputs(Tracker):
    """Records what each new best model, as trained in the search, outputs on its example."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def new_best(self, number: int, value: float, model: torch.nn.Module,
                 example: torch.Tensor) -> None:
        self.seen[number] = (example.clone(), model(example).clone())


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BestOutputs]:
    out = tmp_path_factory.mktemp("api") / "run"
    tracker = BestOutputs()
    # The search's own weights (those the tracker saw); load_best of a final fit: test_budget_*.
    config = SearchConfig(trials=8, space="tiny", out=str(out), mlflow=False, keep=1, seed=0,
                          final_fit=False)
    run_search(config, progress=False, tracker=tracker)
    return out, tracker


def test_load_best_reproduces_the_in_search_model(search: tuple[Path, BestOutputs]) -> None:
    run_dir, tracker = search
    best = open_source(run_dir).trial(0).number
    example, expected = tracker.seen[best]
    net = automl_cnn.load_best(run_dir)
    assert not net.training
    with torch.no_grad():
        assert torch.equal(net(example), expected)


def test_load_best_matches_an_independent_rebuild(search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    src = open_source(run_dir)
    folder = src.weights_folder(src.trial(0).number)
    spec = ArchSpec.from_json((folder / "arch.json").read_text())
    twin = build_model(spec, (1, 8, 8), 10)
    twin.load_state_dict(load_file(str(folder / "model.safetensors")))
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(automl_cnn.load_best(run_dir)(x), twin.eval()(x))


def test_storage_url_and_run_dir_give_the_same_model(search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    url = f"journal:{run_dir / 'study.journal'}"
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        by_url = automl_cnn.load_best(url, study_name="digits-tiny")(x)
        by_dir = automl_cnn.load_best(str(run_dir))(x)
    assert torch.equal(by_url, by_dir)


def test_top_architectures_are_ranked_by_validation_accuracy(
        search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    top = automl_cnn.top_architectures(run_dir, k=100)
    study_done = open_source(run_dir).ranked()
    assert [a.trial for a in top] == [t.number for t in study_done]
    assert [a.rank for a in top] == list(range(len(top)))
    values = [a.val_acc for a in top]
    assert values == sorted(values, reverse=True)
    assert all(a.params > 0 and a.flops > 0 and a.layer_plan for a in top)
    assert automl_cnn.top_architectures(run_dir, k=1) == top[:1]
    with pytest.raises(UserError, match="k must be"):
        automl_cnn.top_architectures(run_dir, k=0)


def test_rank_without_weights_names_the_ranks_that_have_them(
        search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    assert open_source(run_dir).kept_ranks() == [0]  # keep=1
    with pytest.raises(UserError, match=r"rank 1 .*has no kept weights.*ranks 0 have weights"
                                        r".*weights=False.*retrain"):
        automl_cnn.load_best(run_dir, rank=1)
    net = automl_cnn.load_best(run_dir, rank=1, weights=False)
    assert not net.training
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_rank_past_the_completed_trials(search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    n = len(open_source(run_dir).ranked())
    with pytest.raises(UserError, match=rf"rank {n} does not exist.*{n} completed.*0\.\.{n - 1}"):
        automl_cnn.load_best(run_dir, rank=n)
    with pytest.raises(UserError, match="rank -1 does not exist"):
        automl_cnn.load_best(run_dir, rank=-1, weights=False)


def test_input_shape_the_architecture_cannot_take(search: tuple[Path, BestOutputs]) -> None:
    run_dir, _ = search
    with pytest.raises(UserError, match=r"cannot take input shape \(1, 1, 1\).*searched on "
                                        r"\(1, 8, 8\)"):
        automl_cnn.load_best(run_dir, weights=False, input_shape=(1, 1, 1))
    with pytest.raises(UserError, match="3 \\(C, H, W\\)"):
        automl_cnn.load_best(run_dir, weights=False, input_shape=(8, 8))


def test_corrupted_or_missing_weights(search: tuple[Path, BestOutputs], tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(search[0], tmp_path / "copy"))
    src = open_source(run_dir)
    weights = src.weights_folder(src.trial(0).number) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match=r"cannot load weights .*corrupted"):
        automl_cnn.load_best(run_dir)
    weights.unlink()
    with pytest.raises(UserError, match="no weights file model.safetensors"):
        automl_cnn.load_best(run_dir)
    shutil.rmtree(run_dir / "models")
    with pytest.raises(UserError, match=r"no kept weights.*no rank has weights"):
        automl_cnn.load_best(run_dir)


def test_spec_json_of_another_version_is_refused(search: tuple[Path, BestOutputs],
                                                 tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(search[0], tmp_path / "copy"))
    src = open_source(run_dir)
    arch = src.weights_folder(src.trial(0).number) / "arch.json"
    data = json.loads(arch.read_text())
    arch.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(UserError, match=r"arch\.json: this spec has version 99 .*reads version 1"):
        automl_cnn.load_best(run_dir)


def _bare_study(path: Path, name: str) -> str:
    url = f"journal:{path}"
    study = optuna.create_study(study_name=name, storage=make_storage(url),
                                direction="maximize")
    write_study_info(study, config=SearchConfig(space="tiny", out=str(path.parent)),
                     dataset=DatasetInfo("digits", tuple("0123456789"), (1, 8, 8), 10))
    return url


def test_study_without_a_completed_trial(tmp_path: Path) -> None:
    url = _bare_study(tmp_path / "s.journal", "empty")
    with pytest.raises(UserError, match=r"'empty'.*has no completed trial yet \(no trials"):
        automl_cnn.load_best(url)
    assert automl_cnn.top_architectures(url) == []


def test_storage_with_several_studies_needs_a_name(tmp_path: Path) -> None:
    url = _bare_study(tmp_path / "s.journal", "one")
    _bare_study(tmp_path / "s.journal", "two")
    with pytest.raises(UserError, match=r"holds 2 studies \(one, two\).*study_name="):
        automl_cnn.load_best(url)
    with pytest.raises(UserError, match=r"no study 'three'.*'one', 'two'"):
        automl_cnn.load_best(url, study_name="three")


def test_storage_source_finds_weights_where_its_config_says(
        search: tuple[Path, BestOutputs], tmp_path: Path) -> None:
    run_dir = search[0]
    journal = tmp_path / "copied.journal"
    shutil.copyfile(run_dir / "study.journal", journal)
    url = f"journal:{journal}"
    assert open_source(url).run_dir == run_dir  # the study's config names its run directory
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(automl_cnn.load_best(url)(x), automl_cnn.load_best(run_dir)(x))
    study = open_source(url).study
    write_study_info(study, config=read_study_info(study).config.replace(
        out=str(tmp_path / "gone")))
    with pytest.raises(UserError, match=r"should be in .*gone, which does not exist here"):
        automl_cnn.load_best(url)
    assert automl_cnn.load_best(url, weights=False)(x).shape == (4, 10)


def test_latest_run_dir_picks_the_most_recent(tmp_path: Path) -> None:
    for name in ("old", "new"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "config.json").write_text("{}")
        time.sleep(0.01)
    old = tmp_path / "runs" / "old" / "config.json"
    os.utime(old, (time.time() - 100, time.time() - 100))
    os.utime(old.parent, (time.time() - 100, time.time() - 100))
    assert latest_run_dir(tmp_path / "runs").name == "new"
    with pytest.raises(UserError, match="none found under"):
        latest_run_dir(tmp_path / "nowhere")


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        automl_cnn.load_best(tmp_path / "missing")
    with pytest.raises(UserError, match="no config.json"):
        automl_cnn.load_best(tmp_path)


def test_run_directory_without_its_journal(search: tuple[Path, BestOutputs],
                                           tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(search[0] / "config.json", copy / "config.json")
    with pytest.raises(UserError, match=r"study.journal' does not exist"):
        automl_cnn.load_best(copy)
    assert not (copy / "study.journal").exists()
