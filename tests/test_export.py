"""Spec JSON round trips, export folders (safetensors, TorchScript, ONNX), the standalone
model.py, and the ``best`` / ``export`` commands, against a real search on digits."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import automl_cnn
from automl_cnn import ArchSpec, network
from automl_cnn.checkpoint import load_checkpoint
from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.errors import UserError
from automl_cnn.export import export_model
from automl_cnn.runners.search import run_search
from automl_cnn.search_spaces import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACES = {"default": load_space("default"), "tiny": load_space("tiny")}


def sample_spec(space: str, seed: int) -> ArchSpec:
    """One architecture drawn from a shipped space, the way a search draws it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return SPACES[space].sample(study.ask(), flip_ok=bool(seed % 2))


specs = st.builds(sample_spec, st.sampled_from(sorted(SPACES)), st.integers(0, 2**31 - 1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_spec_json_round_trip_is_lossless(spec: ArchSpec) -> None:
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert ArchSpec.from_json(spec.to_json(indent=None)) == spec


def import_file(path: Path, name: str) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# -- a real search, exported --------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_search(SearchConfig(trials=8, space="tiny", out=str(out), mlflow=False, seed=1),
               progress=False)
    return out


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def reference_logits(run_dir: Path, x: torch.Tensor, rank: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return automl_cnn.load_best(run_dir, rank=rank)(x)


def test_export_folder_is_a_checkpoint_with_a_model_card(run_dir: Path, tmp_path: Path,
                                                         batch: torch.Tensor) -> None:
    folder = export_model(run_dir, tmp_path / "out", rank=1)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "arch.json", "meta.json", "model.py", "model.safetensors"]
    net, spec, meta = load_checkpoint(folder)
    with torch.no_grad():
        assert torch.equal(net(batch), reference_logits(run_dir, batch, rank=1))
    top = automl_cnn.top_architectures(run_dir, k=2)[1]
    assert spec == top.spec and meta["trial"] == top.trial and meta["rank"] == 1
    card = (folder / "README.md").read_text()
    assert f"(trial {top.trial})" in card and f"{top.val_acc:.4f}" in card
    assert f"{top.params:,}" in card and "from model import load" in card
    for row in top.layer_plan:  # the layer table lists every layer with its output volume
        assert f"| {row['layer']} | {row['kind']} | {row['output']} |" in card


def test_torchscript_export_matches_pytorch(run_dir: Path, tmp_path: Path,
                                            batch: torch.Tensor) -> None:
    folder = export_model(run_dir, tmp_path / "ts", fmt="torchscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
    with torch.no_grad():
        assert torch.allclose(scripted(batch), reference_logits(run_dir, batch), atol=1e-5)
        assert scripted(batch[:1]).shape == (1, 10)


@pytest.mark.slow
def test_onnx_export_matches_pytorch_at_any_batch_size(run_dir: Path, tmp_path: Path,
                                                       batch: torch.Tensor) -> None:
    import onnxruntime as ort

    folder = export_model(run_dir, tmp_path / "onnx", fmt="onnx")
    session = ort.InferenceSession(str(folder / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = reference_logits(run_dir, batch).numpy()
    for n in (1, 3, 7):  # exported with batch 2: the batch axis must be dynamic
        (got,) = session.run(None, {"images": batch[:n].numpy()})
        np.testing.assert_allclose(got, expected[:n], atol=1e-4, rtol=1e-4)
    assert "ONNX Runtime" in (folder / "README.md").read_text()


STANDALONE = """
import importlib.util, json, sys
assert importlib.util.find_spec("automl_cnn") is None, "automl_cnn is importable here"
import numpy as np, torch
from model import load
net = load(".")
x = torch.from_numpy(np.load("batch.npy"))
with torch.no_grad():
    print(json.dumps({"training": net.training, "logits": net(x).tolist()}))
"""


def run_standalone(folder: Path, batch: torch.Tensor) -> subprocess.CompletedProcess[str]:
    """Run STANDALONE in ``folder`` where only torch (and numpy) can be imported."""
    np.save(folder / "batch.npy", batch.numpy())
    site_packages = str(Path(torch.__file__).parent.parent)
    # -S: no site module, so no .pth file (the editable install of automl_cnn) is processed;
    # PYTHONPATH holds the export folder and the folder torch lives in, nothing else.
    return subprocess.run([sys.executable, "-S", "-c", STANDALONE], cwd=folder,
                          env={"PYTHONPATH": os.pathsep.join([str(folder), site_packages]),
                               "PATH": os.environ.get("PATH", "")},
                          capture_output=True, text=True, timeout=120)


def test_standalone_model_py_needs_no_automl_cnn(run_dir: Path, tmp_path: Path,
                                                 batch: torch.Tensor) -> None:
    folder = export_model(run_dir, tmp_path / "standalone")
    done = run_standalone(folder, batch)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["training"] is False
    assert torch.allclose(torch.tensor(result["logits"]), reference_logits(run_dir, batch),
                          atol=1e-6)


def test_model_py_is_the_packages_own_builder_and_refuses_a_mismatch(run_dir: Path,
                                                                     tmp_path: Path) -> None:
    folder = export_model(run_dir, tmp_path / "guard")
    assert (folder / "model.py").read_bytes() == Path(network.__file__).read_bytes()
    shipped = import_file(folder / "model.py", "guarded_model")
    arch = json.loads((folder / "arch.json").read_text())
    (folder / "arch.json").write_text(json.dumps({**arch, "version": 2}))
    with pytest.raises(ValueError, match="spec version 2, but this file reads version 1"):
        shipped.load(folder)
    arch["blocks"][0]["filters"] += 1
    (folder / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(ValueError, match="does not fit the network of"):
        shipped.load(folder)


HOSTILE = 'x"""\nprint("INJECTED")\n_ = """'


@pytest.mark.slow
def test_a_hostile_study_name_never_reaches_python_source(tmp_path: Path,
                                                         batch: torch.Tensor) -> None:
    run = tmp_path / "run"
    assert main(["search", "--trials", "2", "--space", "tiny", "--no-mlflow", "--out", str(run),
                 "--study-name", HOSTILE]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out"
    assert json.loads((folder / "meta.json").read_text())["study_name"] == HOSTILE  # data only
    assert HOSTILE not in (folder / "model.py").read_text()
    done = run_standalone(folder, batch)
    assert done.returncode == 0, done.stderr
    assert "INJECTED" not in done.stdout + done.stderr
    logits = json.loads(done.stdout.strip().splitlines()[-1])["logits"]
    assert torch.allclose(torch.tensor(logits), reference_logits(run, batch), atol=1e-6)


def test_export_bad_input(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown export format 'pickle'.*safetensors, "
                                        "torchscript, onnx"):
        export_model(run_dir, tmp_path / "a", fmt="pickle")
    with pytest.raises(UserError, match=r"has not been retrained.*automl-cnn retrain --rank 0"):
        export_model(run_dir, tmp_path / "b", retrained=True)
    again = export_model(run_dir, export_model(run_dir, tmp_path / "c", fmt="torchscript"))
    assert not (again / "model.torchscript.pt").exists()  # an old export is replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp folder left behind


@pytest.mark.parametrize("files", [{"notes.txt": "mine"}, {"README.md": "# my project"},
                                   {"model.py": "print('mine')", "README.md": "# mine"},
                                   {"meta.json": "{}", "model.py": "x = 1"}])
def test_export_never_replaces_a_folder_of_the_users_own(run_dir: Path, tmp_path: Path,
                                                         files: dict[str, str]) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    for name, text in files.items():
        (busy / name).write_text(text)
    with pytest.raises(UserError, match=r"already holds other files \(.*\) that no earlier "
                                        "automl-cnn export wrote"):
        export_model(run_dir, busy)
    assert {p.name: p.read_text() for p in busy.iterdir()} == files


def test_export_into_the_current_folder_is_a_clear_error(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("mine")
    for out in (".", str(tmp_path.parent)):
        assert main(["export", str(run_dir), "--out", out]) == 2
        err = capsys.readouterr().err
        assert "is the current folder or holds it" in " ".join(err.split())
        assert "Traceback" not in err
    assert (tmp_path / "mine.txt").read_text() == "mine"


# -- the commands ---------------------------------------------------------------------------------

def test_best_command_prints_the_top_k(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["best", str(run_dir), "--k", "2"]) == 0
    out = capsys.readouterr().out
    top = automl_cnn.top_architectures(run_dir, k=2)
    assert f"Best 2 of {len(automl_cnn.api.open_source(run_dir).ranked())} completed" in out
    for arch in top:
        assert f"{arch.val_acc:.4f}" in out and f"{arch.params:,}" in out
        assert f"{arch.flops:,}" in out
        assert " → ".join(r["output"] for r in arch.layer_plan) in out
        assert f"Rank {arch.rank} (trial {arch.trial})" in out


def test_best_command_defaults_to_the_latest_run(run_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").mkdir()
    shutil.copytree(run_dir, tmp_path / "runs" / "copy")
    monkeypatch.chdir(tmp_path)
    assert main(["best", "--k", "1"]) == 0
    captured = capsys.readouterr()
    assert "Using runs/copy, the most recently modified run directory" in captured.err
    assert "Best 1 of" in captured.out


def test_export_command(run_dir: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["export", str(run_dir), "--rank", "0", "--format", "torchscript",
                 "--out", str(out)]) == 0
    assert "model.torchscript.pt" in capsys.readouterr().out
    assert (out / "model.py").exists() and (out / "model.torchscript.pt").exists()


@pytest.mark.parametrize("argv, message", [
    (["best", "{run}", "--k", "0"], "--k must be at least 1"),
    (["export", "{run}", "--rank", "99", "--out", "{tmp}/x"], "rank 99 does not exist"),
    (["export", "{run}", "--seed", "1", "--out", "{tmp}/x"], "add --retrained"),
    (["best", "{tmp}/nothing"], "does not exist"),
    (["best", "{run}", "--storage", "journal:{run}/study.journal"], "not both"),
])
def test_commands_report_bad_input_in_one_paragraph(
        argv: list[str], message: str, run_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(run=run_dir, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("automl-cnn: error:") and message in " ".join(err.split())
    assert "Traceback" not in err


def test_shipped_metadata_holds_no_database_password() -> None:
    from automl_cnn.export import without_password

    assert without_password("postgresql://bob:s3cret@db:5432/studies") == \
        "postgresql://bob:***@db:5432/studies"
    assert without_password("journal:/runs/x/study.journal") == "journal:/runs/x/study.journal"


def test_an_exports_flops_count_every_network_and_both_flips() -> None:
    # The card's "FLOPs per image" is what the exported model costs as it runs: an average of
    # flips runs each image twice; an ensemble runs each of its networks.
    from dataclasses import replace

    from automl_cnn.export.folder import model_costs
    from automl_cnn.shapes import plan_layers

    one, two = sample_spec("default", 0), sample_spec("default", 2)
    shape = (1, 28, 28)
    a, b = plan_layers(one, shape, 10), plan_layers(two, shape, 10)
    assert model_costs(one, shape, 10) == (a.params, a.flops)
    flipped = replace(one, head=replace(one.head, tta="flip"))
    assert model_costs(flipped, shape, 10) == (a.params, 2 * a.flops)
    pair = replace(flipped, members=(replace(two, head=replace(two.head, tta="flip")),))
    assert model_costs(pair, shape, 10) == (a.params + b.params, 2 * (a.flops + b.flops))
