"""Near-tied finalists are averaged: who is a finalist, the ensemble network, and the final
fit that trains it (automl_cnn.finalists, network.Ensemble, runners.phases.run_final_fit)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, TrainSpec
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.config import SearchConfig
from automl_cnn.data import load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.errors import UserError
from automl_cnn.finalists import ensemble_size, noise_band, pick_finalists
from automl_cnn.model import build_model
from automl_cnn.network import Ensemble
from automl_cnn.record import Fidelity, Outcome, TrialRecord, record_attrs

NET_A = ArchSpec(blocks=(ConvBlock(8, pool="max"),), head=HeadSpec(global_pool="avg"),
                 train=TrainSpec(epochs=3, lr=0.01))
NET_B = ArchSpec(blocks=(ConvBlock(6, kernel=5, padding=2),), head=HeadSpec(),
                 train=TrainSpec(epochs=2, lr=0.01))


def done(number: int, acc: float, spec: ArchSpec = NET_A, **fields: object) -> TrialRecord:
    epochs = spec.train.epochs
    history = tuple({"epoch": e, "val_acc": acc, "val_loss": 0.3, "seconds": 0.05 * (e + 1)}
                    for e in range(epochs))
    return TrialRecord(number=number, outcome=Outcome.COMPLETE, values=(acc,), spec=spec,
                       history=history, **fields)  # type: ignore[arg-type]


def test_the_noise_band_is_two_standard_errors_of_the_validation_split() -> None:
    # digits: 359 validation images, one error at the top -> about 2.8 images either way
    assert noise_band(0.9972, 359) == pytest.approx(0.00785, abs=1e-4)
    assert noise_band(1.0, 359) > 0  # a perfect score is not certain either
    assert noise_band(0.93, 20_000) < noise_band(0.93, 3_600) < noise_band(0.93, 359)


def test_finalists_are_the_trials_within_noise_of_the_best_best_first() -> None:
    ranked = [done(4, 0.9972), done(1, 0.9944), done(7, 0.9916, NET_B), done(2, 0.9861)]
    picked = pick_finalists(ranked, n_train=1079, n_val=359, most=3)
    assert [r.number for r in picked] == [4, 1, 7]  # 0.9861 is 1.1 points down: out
    assert [r.number for r in pick_finalists(ranked, n_train=1079, n_val=359, most=2)] == [4, 1]
    # On a 20,000-image validation split the same gaps are real: the best stands alone.
    assert [r.number for r in pick_finalists(ranked, n_train=9, n_val=20_000, most=3)] == [4]
    assert pick_finalists([], n_train=1079, n_val=359, most=3) == []


def test_only_trials_trained_like_the_winner_tie_with_it() -> None:
    rung2 = Fidelity(train_images=1079, epochs=9, rung=2)
    ladder_top = done(3, 0.90, replace(NET_A, train=replace(NET_A.train, epochs=9)),
                      fidelity=rung2)
    cheap = done(5, 0.90, fidelity=Fidelity(train_images=300, epochs=3, rung=0))
    # A ladder's winner (top rung): its rivals trained on less, so it is the one finalist.
    assert [r.number for r in pick_finalists([ladder_top, cheap], n_train=1079, n_val=359,
                                             most=3)] == [3]
    # A subset-trained rival at rung 0 does not join a full-split winner either.
    full = done(6, 0.90)
    assert [r.number for r in pick_finalists([full, cheap], n_train=1079, n_val=359,
                                             most=3)] == [6]
    in_sample = done(8, 0.99, fidelity=Fidelity(1438, 3, 0, whole=True, with_val=True))
    assert [r.number for r in pick_finalists([in_sample], n_train=1079, n_val=359,
                                             most=3)] == [8]


def test_no_ensemble_under_a_size_or_speed_limit_or_for_several_objectives() -> None:
    assert ensemble_size(SearchConfig()) == 3
    assert ensemble_size(SearchConfig(ensemble=1)) == 1
    for limited in ({"max_params": 10_000}, {"max_flops": 10**6}, {"max_latency_ms": 1.0},
                    {"max_memory_mb": 5.0}, {"objectives": ("val_acc", "latency")},
                    {"objectives": ("val_acc", "params"), "pruner": "none"}):
        assert ensemble_size(SearchConfig(**limited)) == 1, limited  # type: ignore[arg-type]
    for bad in (0, 9, 2.5, True):
        with pytest.raises(UserError, match="--ensemble"):
            SearchConfig(ensemble=bad).check()  # type: ignore[arg-type]


def test_an_ensemble_averages_its_networks_log_probabilities_and_exports(
        tmp_path: Path) -> None:
    from automl_cnn.export.formats import write_onnx, write_torchscript

    spec = replace(NET_A, head=replace(NET_A.head, tta="flip"), members=(NET_B,))
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert "members" not in NET_A.to_dict()  # a single network's arch.json keeps its shape
    net = build_model(spec, (1, 8, 8), 10).eval()
    assert isinstance(net, Ensemble) and len(net.members) == 2
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
        each = [m(x).log_softmax(1) for m in net.members]
        assert torch.allclose(expected, (each[0] + each[1]) / 2, atol=1e-6)
        lone = build_model(NET_A, (1, 8, 8), 10).eval()
        lone.load_state_dict({k.removeprefix("members.0."): v
                              for k, v in net.state_dict().items() if k.startswith("members.0.")})
        flipped = (lone(x) + lone(torch.flip(x, dims=[3]))) / 2  # member 0 averages flips
        assert torch.allclose(each[0], flipped.log_softmax(1), atol=1e-5)
        scripted = torch.jit.load(str(write_torchscript(net, tmp_path / "m.pt")))
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    import onnxruntime as ort

    session = ort.InferenceSession(str(write_onnx(net, (1, 8, 8), tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4)


def test_the_final_fit_trains_the_near_tied_finalists_and_saves_their_average(
        tmp_path: Path) -> None:
    from automl_cnn.evaluation import evaluate_checkpoint
    from automl_cnn.runners.phases import run_final_fit

    data = load_dataset("digits", seed=0)
    device = resolve_device("cpu")
    study = optuna.create_study(direction="maximize")
    for record in (done(0, 0.95), done(1, 0.946, NET_B), done(2, 0.80)):
        study.add_trial(optuna.trial.create_trial(value=record.values[0],
                                                  user_attrs=record_attrs(record)))
    config = SearchConfig(mlflow=False, out=str(tmp_path))
    final = run_final_fit(study, config, data, device, tmp_path, None, progress=False)
    assert final is not None and final["members"] == [0, 1]  # 0.80 is far outside the band
    assert final["member_epochs"] == [3, 2]  # each its own recipe's epochs (no budget)
    model, spec, meta = load_checkpoint(Path(final["dir"]))
    assert isinstance(model, Ensemble) and spec.networks == (NET_A, NET_B)
    assert meta["trained_on"] == "train+val" and meta["trial"] == 0
    scored = evaluate_checkpoint(Path(final["dir"]), data, device)
    with torch.no_grad():
        hits = model(data.x_test.float() / 255).argmax(1) == data.y_test
    assert scored["accuracy"] == pytest.approx(hits.float().mean().item())
    assert len(json.loads((Path(final["dir"]) / "history.json").read_text())) == 3

    alone = run_final_fit(study, config.replace(ensemble=1), data, device, tmp_path / "one",
                          None, progress=False)
    assert alone is not None and alone["members"] == [0]
    model, spec, _ = load_checkpoint(Path(alone["dir"]))
    assert not isinstance(model, Ensemble) and spec == NET_A


def test_load_best_gives_the_flip_averaging_final_model(tmp_path: Path) -> None:
    # clutter's labels survive a flip, so the final fit's model averages flips; load_best must
    # return that model (it refused it: its arch.json differs from the trial's by head.tta).
    from automl_cnn.api import load_best
    from automl_cnn.network import FlipAveraged
    from automl_cnn.runners.search import run_search

    outcome = run_search(SearchConfig(dataset="clutter:2000", space="tiny", trials=2,
                                      ensemble=1, mlflow=False, out=str(tmp_path)),
                         progress=False)
    tested = outcome.summary["test"]
    assert tested["model"] == "final" and tested["tta"] == "flip"
    net = load_best(tmp_path)
    assert isinstance(net, FlipAveraged)
    data = load_dataset("clutter:2000", seed=0)
    with torch.no_grad():
        hits = net(data.x_test.float() / 255).argmax(1) == data.y_test
    assert hits.float().mean().item() == pytest.approx(outcome.summary["test"]["accuracy"])
    assert not isinstance(load_best(tmp_path, final=False), FlipAveraged)  # the search's own


@pytest.mark.slow
def test_a_digits_search_hands_over_the_average_of_its_near_tied_finalists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    from automl_cnn.api import load_best
    from automl_cnn.cli import main
    from automl_cnn.results import ranked_trials
    from automl_cnn.storage import make_storage

    out = tmp_path / "run"
    assert main(["search", "--trials", "20", "--seed", "2", "--out", str(out), "--no-progress",
                 "--no-mlflow"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    final = summary["final"]
    study = optuna.load_study(study_name=None, storage=make_storage(f"journal:{out}/study.journal"))
    data = load_dataset("digits", seed=2)
    expected = pick_finalists(ranked_trials(study), n_train=len(data.y_train),
                              n_val=len(data.y_val), most=3)
    assert len(expected) >= 2 and final["members"] == [r.number for r in expected]
    assert f"the average of trials {', '.join(map(str, final['members']))}" in printed
    assert f"the first of {len(expected)} finalists it averages" in (
        out / "report.html").read_text()
    net = load_best(out)  # the model tested is the model users import and export
    assert isinstance(net, Ensemble) and len(net.members) == len(expected)
    with torch.no_grad():
        hits = net(data.x_test.float() / 255).argmax(1) == data.y_test
    assert hits.float().mean().item() == pytest.approx(summary["test"]["accuracy"])
    assert main(["export", str(out), "--out", str(tmp_path / "x")]) == 0
    probe = ("import torch; from model import load; net = load('.'); torch.manual_seed(0); "
             "print(net(torch.rand(2, 1, 8, 8)).tolist())")
    got = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "x", check=True,
                         capture_output=True, text=True).stdout
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.allclose(torch.tensor(json.loads(got)), net(torch.rand(2, 1, 8, 8)),
                              atol=1e-5)


def test_under_a_budget_the_finalists_train_only_while_each_gets_its_own_epochs() -> None:
    from automl_cnn.data import ImageSplits
    from automl_cnn.runners.phases import final_fit_need, final_plans

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.arange(n) % 2

    (xt, yt), (xv, yv), (xs, ys) = images(1000), images(400), images(10)
    data = ImageSplits("blank", ("a", "b"), xt, yt, xv, yv, xs, ys)
    study = optuna.create_study(direction="maximize")
    for record in (done(0, 0.95), done(1, 0.948, NET_B)):  # 0.05 s an epoch on 1,000 images
        study.add_trial(optuna.trial.create_trial(value=record.values[0],
                                                  user_attrs=record_attrs(record)))
    config = SearchConfig()
    # Each epoch on train + validation: 0.07 s. NET_A needs 3 epochs, NET_B 2.
    assert [m.number for m, _ in final_plans(study, config, data, None)] == [0, 1]
    both = final_plans(study, config, data, 2 * 3 * 0.07 + 0.01)  # a share buys 3 epochs each
    assert [m.number for m, _ in both] == [0, 1] and both[0][1].epochs == 3
    alone = final_plans(study, config, data, 2 * 3 * 0.07 - 0.02)  # a half-share is short
    assert [m.number for m, _ in alone] == [0] and alone[0][1].epochs >= 3
    # Trials timed in --jobs workers that each had 0.7 of one process's speed: the final fit
    # trains alone, so the same seconds buy both members their epochs again.
    shared = final_plans(study, config, data, 2 * 3 * 0.07 - 0.02, share=0.7)
    assert [m.number for m, _ in shared] == [0, 1]
    assert shared[0][1].epoch_seconds == pytest.approx(0.7 * both[0][1].epoch_seconds)
    assert final_plans(study, config.replace(ensemble=1), data, None)[0][0].number == 0
    assert len(final_plans(study, config.replace(ensemble=1), data, None)) == 1
    # What the search phase keeps back for the final fit counts every member it will train.
    from automl_cnn.budget import Budget

    budget = Budget.start(100, final_share=0.5, clock=lambda: 0.0)
    need = final_fit_need(study, budget, data, config)
    assert need == pytest.approx(sum(p.epochs * (p.epoch_seconds or 0) for _, p in
                                     final_plans(study, config, data, budget.final_left())))
    assert need > final_fit_need(study, budget, data, config.replace(ensemble=1))
