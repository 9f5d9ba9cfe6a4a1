"""Promises SECURITY.md makes that no other test holds: kept weights load without any
unpickling, ``automl-cnn ui`` binds to the loopback interface only, and an architecture read
from a study is data, never code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from automl_cnn.arch import ArchSpec, ConvBlock, HeadSpec, SpecError
from automl_cnn.checkpoint import load_checkpoint, save_checkpoint
from automl_cnn.cli.ui import HOST, server_command
from automl_cnn.model import build_model


def refuse(*_: object, **__: object) -> None:
    raise AssertionError("something was unpickled")


def test_kept_weights_load_without_unpickling(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ArchSpec(blocks=(ConvBlock(4, kernel=3, padding=1),), head=HeadSpec())
    model = build_model(spec, (1, 8, 8), num_classes=3)
    folder = save_checkpoint(tmp_path / "trial-0000", model, spec,
                             {"input_shape": [1, 8, 8], "num_classes": 3})
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".json", ".safetensors"]
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, loaded_spec, _ = load_checkpoint(folder, device="cpu")
    assert loaded_spec == spec
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))


def test_the_ui_binds_to_loopback_only() -> None:
    cmd = server_command("sqlite:////tmp/mlflow.db", 5000)
    assert HOST == "127.0.0.1"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "0.0.0.0" not in cmd


def test_a_stored_architecture_is_data_never_code(tmp_path: Path) -> None:
    """A study's architecture JSON comes from whoever can write the storage: read as data."""
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    good = json.loads(ArchSpec(blocks=(ConvBlock(4),)).to_json())
    hostile = [
        {**good, "blocks": [{**good["blocks"][0], "filters": code}]},
        {**good, "head": {**good["head"], "activation": code}},
        {**good, code: 1},
    ]
    for data in hostile:
        with pytest.raises(SpecError):
            ArchSpec.from_json(json.dumps(data))
    assert not marker.exists()
