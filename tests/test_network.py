"""``automl_cnn/network.py``, the one torch-only builder: automl-cnn builds with it and every
export ships it as ``model.py``, so it must run where automl_cnn cannot be imported."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import save_file

from automl_cnn import arch, network
from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.model import build_model
from automl_cnn.search_spaces import load_space
from automl_cnn.shapes import InfeasibleArchitecture, check_feasible

optuna.logging.set_verbosity(optuna.logging.WARNING)
TORCH_SITE = str(Path(torch.__file__).parent.parent)

# Run with -I -S: no user site, no environment, no site-packages .pth files (the editable
# install of automl_cnn lives in one); only the folder torch is in joins sys.path.
ISOLATED = """
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("automl_cnn") is None, "automl_cnn is importable here"
folder = sys.argv[2]
spec = importlib.util.spec_from_file_location("model", folder + "/model.py")
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)
import torch
out = []
for i, case in enumerate(json.load(open(folder + "/cases.json"))):
    net = model.build(case["arch"], tuple(case["input_shape"]), case["num_classes"]).eval()
    net.load_state_dict(model.read_safetensors(f"{folder}/w{i}.safetensors"))
    x = model.read_safetensors(f"{folder}/x{i}.safetensors")["x"]
    with torch.no_grad():
        out.append(net(x).tolist())
print(json.dumps(out))
"""


def run_isolated(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-S", "-c", script, TORCH_SITE, *args],
                          capture_output=True, text=True, timeout=300)


def sampled_specs(n: int, shape: tuple[int, int, int]) -> list[ArchSpec]:
    """Feasible architectures drawn from both shipped spaces, the way a search draws them."""
    found: list[ArchSpec] = []
    for seed in range(10 * n):
        space = load_space(("default", "tiny")[seed % 2])
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        spec = space.sample(study.ask(), flip_ok=True)
        if check_feasible(spec, shape, 4) is None:
            found.append(spec)
        if len(found) == n:
            break
    return found


def test_the_copied_file_alone_builds_what_build_model_builds(tmp_path: Path) -> None:
    shape = (3, 32, 32)
    specs = sampled_specs(24, shape)
    specs.append(ArchSpec(blocks=(ConvBlock(4, pool="l2", batch_norm=False),
                                  ConvBlock(6, activation="gelu", pool="avg"))))
    shutil.copyfile(network.__file__, tmp_path / "model.py")
    expected, cases = [], []
    for i, spec in enumerate(specs):
        torch.manual_seed(i)
        reference = build_model(spec, shape, 4).eval()
        for name, buf in reference.named_buffers():  # non-trivial BatchNorm statistics
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
                  str(tmp_path / f"w{i}.safetensors"))
        x = torch.rand(3, *shape)
        save_file({"x": x}, str(tmp_path / f"x{i}.safetensors"))
        with torch.no_grad():
            expected.append(reference(x))
        cases.append({"arch": spec.to_dict(), "input_shape": shape, "num_classes": 4})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = run_isolated(ISOLATED, str(tmp_path))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got) == len(specs)
    for want, logits in zip(expected, got):
        assert torch.allclose(torch.tensor(logits), want, atol=1e-5)


def test_the_builder_imports_only_torch_and_the_standard_library() -> None:
    tree = ast.parse(Path(network.__file__).read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - set(sys.stdlib_module_names) == {"torch"}


def test_the_builders_tables_cover_every_name_a_spec_may_use() -> None:
    assert set(network.ACTIVATIONS) == set(arch.ACTIVATIONS)
    assert set(network.POOLS) | {"none"} == set(arch.POOLS)
    assert network.SPEC_VERSION == arch.SPEC_VERSION
    with pytest.raises(ValueError, match="unknown pool 'median'. Valid pools: avg, l2, max"):
        network.lookup(network.POOLS, "pool", "median")


def test_impossible_inputs_still_get_the_shape_rules_error() -> None:
    spec = ArchSpec(blocks=(ConvBlock(8, kernel=7, padding=0),))
    with pytest.raises(InfeasibleArchitecture):
        build_model(spec, (1, 4, 4), 10)
    with pytest.raises(ValueError, match=r"input \(1, 4, 4\) is too small"):
        network.build(spec.to_dict(), (1, 4, 4), 10)  # alone, it says so too


def test_an_arch_json_of_another_version_is_refused() -> None:
    arch_dict = {**ArchSpec(blocks=(ConvBlock(8),)).to_dict(), "version": 2}
    with pytest.raises(ValueError, match="spec version 2, but this file reads version 1"):
        network.build(arch_dict, (1, 8, 8), 10)


def test_a_stack_that_ends_at_one_pixel_builds() -> None:
    spec = ArchSpec(blocks=(ConvBlock(4, kernel=8, padding=0),))  # BatchNorm sees 1×1 maps
    assert build_model(spec, (1, 8, 8), 3).eval()(torch.rand(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("pool", [*sorted(network.POOLS), "none"])
@pytest.mark.parametrize("activation", sorted(network.ACTIVATIONS))
def test_every_activation_and_pool_gives_finite_gradients(activation: str, pool: str) -> None:
    spec = ArchSpec(blocks=(ConvBlock(4, activation=activation, pool=pool),),
                    head=HeadSpec(widths=(8,), activation=activation, dropout=0.1))
    model = build_model(spec, (1, 8, 8), 3)
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, :4] = torch.rand(4, 1, 4, 8)  # all-zero windows too: L2 pooling's NaN trap
    model(x).logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_flip_tta_averages_each_image_and_its_mirror_in_eval_mode_only() -> None:
    spec = ArchSpec(blocks=(ConvBlock(4), ConvBlock(6)), head=HeadSpec(global_pool="flatten"))
    flipped = ArchSpec.from_dict({**spec.to_dict(), "head": {**spec.to_dict()["head"],
                                                             "tta": "flip"}})
    assert flipped.head.tta == "flip" and ArchSpec.from_json(flipped.to_json()) == flipped
    old = spec.to_dict()
    del old["head"]["tta"]  # arch.json written before test-time augmentation existed
    assert ArchSpec.from_dict(old).head.tta == "none"
    torch.manual_seed(0)
    plain = build_model(spec, (1, 8, 8), 10)
    tta = build_model(flipped, (1, 8, 8), 10)
    assert list(tta.state_dict()) == list(plain.state_dict())  # the same weights load
    tta.load_state_dict(plain.state_dict())
    x = torch.rand(3, 1, 8, 8)
    plain.eval()
    tta.eval()
    with torch.no_grad():
        expected = (plain(x) + plain(torch.flip(x, dims=[3]))) / 2
        assert torch.allclose(tta(x), expected, atol=1e-6)
        assert not torch.allclose(tta(x), plain(x), atol=1e-4)
        tta.train()
        plain.train()
        torch.manual_seed(1)
        trained_view = tta(x)
        torch.manual_seed(1)
        assert torch.allclose(trained_view, plain(x))  # training sees each image once
    with pytest.raises(arch.SpecError, match="tta"):
        HeadSpec(tta="rotate")


def test_a_flip_tta_network_exports_to_torchscript_and_onnx(tmp_path: Path) -> None:
    from automl_cnn.export.formats import write_onnx, write_torchscript

    spec = ArchSpec(blocks=(ConvBlock(4),), head=HeadSpec(tta="flip"))
    net = build_model(spec, (1, 8, 8), 10).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
        scripted = torch.jit.load(str(write_torchscript(net, tmp_path / "m.pt")))
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    from automl_cnn.export.card import model_card

    meta = {"input_shape": [1, 8, 8], "num_classes": 10, "study_name": "s", "rank": 0,
            "trial": 0, "dataset": "clutter", "format": "onnx", "value": 0.9, "params": 1,
            "flops": 1}
    assert "mirror image" in model_card(spec, meta, files=[])  # the card says what it runs
    assert "mirror image" not in model_card(replace(spec, head=HeadSpec()), meta, files=[])
    import onnxruntime as ort

    session = ort.InferenceSession(str(write_onnx(net, (1, 8, 8), tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4)
