"""The shape rule, the layer plan and the builder agree with what torch really does."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec
from automl_cnn.model import build_model
from automl_cnn.search_spaces import load_space
from automl_cnn.shapes import InfeasibleArchitecture, check_feasible, conv_output_size, plan_layers

INPUTS = [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 17, 23)]


def sample_spec(space_name: str, seed: int, *, flip_ok: bool = True) -> ArchSpec:
    """A random architecture from a shipped space, as the search would sample it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return load_space(space_name).sample(study.ask(), flip_ok=flip_ok)


@given(size=st.integers(1, 40), kernel=st.integers(1, 9), stride=st.integers(1, 4),
       padding=st.integers(0, 4))
@settings(max_examples=150, deadline=None)
def test_conv_output_size_matches_torch(size: int, kernel: int, stride: int,
                                        padding: int) -> None:
    conv = nn.Conv2d(1, 1, kernel, stride, padding)
    x = torch.zeros(1, 1, size, size)
    try:
        predicted = conv_output_size(size, kernel=kernel, stride=stride, padding=padding)
    except InfeasibleArchitecture:
        with pytest.raises(RuntimeError):
            conv(x)
        return
    assert conv(x).shape[-1] == predicted == math.floor((size - kernel + 2 * padding) / stride) + 1


def test_output_size_formula_on_the_primer_example() -> None:
    # 32×32 input, 5×5 filter, stride 1, no padding -> 28×28 (the CNN primer's example).
    assert conv_output_size(32, kernel=5, stride=1, padding=0) == 28
    # Zero padding 2 on 32×32 gives a 36×36 input volume; a 5×5 filter keeps 32.
    assert conv_output_size(32, kernel=5, stride=1, padding=2) == 32
    assert conv_output_size(7, kernel=3, stride=2, padding=0) == 3


def real_shapes(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, tuple]:
    """Output shape of every conv, pool and head layer, recorded with forward hooks."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[0] == "features" and len(parts) == 3 and parts[2] in ("conv", "pool"):
            key = f"{parts[1]}.{parts[2]}"
        elif parts[0] == "head" and len(parts) == 2 and isinstance(module, nn.Linear):
            key = f"head.{parts[1]}"
        else:
            continue
        hooks.append(module.register_forward_hook(
            lambda m, i, o, key=key: shapes.__setitem__(key, tuple(o.shape[1:]))))
    model.eval()
    with torch.no_grad():
        model(torch.rand(2, *input_shape))
    for h in hooks:
        h.remove()
    return shapes


@given(seed=st.integers(0, 2**31 - 1), space=st.sampled_from(["default", "tiny"]),
       input_shape=st.sampled_from(INPUTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_plan_predicts_real_shapes_params_and_flops(seed: int, space: str,
                                                    input_shape: tuple[int, int, int]) -> None:
    spec = sample_spec(space, seed)
    reason = check_feasible(spec, input_shape, 10)
    if reason is not None:
        # Never trained: the builder refuses it with the same reason.
        with pytest.raises(InfeasibleArchitecture):
            build_model(spec, input_shape, 10)
        return
    plan = plan_layers(spec, input_shape, 10)
    model = build_model(spec, input_shape, 10)
    shapes = real_shapes(model, input_shape)
    planned = {layer.name: layer.out_shape for layer in plan.layers
               if layer.kind in ("conv", "pool", "linear")}
    assert shapes == planned
    assert plan.params == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.rand(1, *input_shape))
    assert plan.flops == counter.get_total_flops()


def test_receptive_field_grows_by_kernel_times_jump() -> None:
    spec = ArchSpec(blocks=(
        ConvBlock(4, kernel=3, stride=1, padding=1, pool="max", pool_size=2, pool_stride=2),
        ConvBlock(4, kernel=5, stride=1, padding=2),
    ))
    rf = {layer.name: layer.receptive_field for layer in plan_layers(spec, (1, 32, 32), 2).layers}
    # conv3: 3; pool2 (jump 1): 3 + 1 = 4, jump 2; conv5: 4 + 4·2 = 12.
    assert (rf["block1.conv"], rf["block1.pool"], rf["block2.conv"]) == (3, 4, 12)
    assert rf["head.out"] == 32  # a head unit sees the whole image
    deep = plan_layers(spec, (1, 8, 8), 2)
    assert deep.layers[-1].receptive_field == deep.receptive_field == 12  # overhangs the 8×8


def test_infeasible_reason_names_the_layer() -> None:
    spec = ArchSpec(blocks=(ConvBlock(8, kernel=7, padding=0),))
    reason = check_feasible(spec, (1, 5, 5), 10)
    assert reason is not None and "block1.conv" in reason and "kernel 7" in reason


@given(seed=st.integers(0, 2**31 - 1), space=st.sampled_from(["default", "tiny"]),
       input_shape=st.sampled_from(INPUTS[:2]))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_forward_backward_every_parameter_gets_a_finite_gradient(
        seed: int, space: str, input_shape: tuple[int, int, int]) -> None:
    spec = sample_spec(space, seed)
    if check_feasible(spec, input_shape, 10):
        return
    torch.manual_seed(seed % 1000)
    model = build_model(spec, input_shape, 10).train()
    x = torch.rand(4, *input_shape)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.arange(4) % 10).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_l2_pooling_has_finite_gradient_on_all_zero_windows() -> None:
    spec = ArchSpec(blocks=(ConvBlock(2, pool="l2", batch_norm=False),),
                    head=HeadSpec(global_pool="flatten"))
    model = build_model(spec, (1, 4, 4), 2)
    with torch.no_grad():
        for p in model.features.parameters():
            p.zero_()  # every conv output is 0 -> every pooling window is all zeros
    model(torch.rand(3, 1, 4, 4)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@given(seed=st.integers(0, 2**31 - 1), space=st.sampled_from(["default", "tiny"]))
@settings(max_examples=60, deadline=None)
def test_spec_json_round_trip_is_lossless(seed: int, space: str) -> None:
    spec = sample_spec(space, seed)
    assert ArchSpec.from_json(spec.to_json()) == spec
