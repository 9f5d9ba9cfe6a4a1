"""The model card: the README.md of an exported folder (metrics, layers, how to load).

Example:
    >>> text = model_card(spec, meta, files=["model.py"])
    >>> text.startswith("# ")
    True
"""

from __future__ import annotations

from typing import Any

from automl_cnn.arch import ArchSpec
from automl_cnn.shapes import plan_layers


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if i in right else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def layer_table(spec: ArchSpec, input_shape: tuple[int, int, int], num_classes: int) -> str:
    rows = [[r["layer"], r["kind"], str(r["output"]), str(r["receptive_field"]),
             f"{r['params']:,}", f"{r['flops']:,}"]
            for r in plan_layers(spec, input_shape, num_classes).as_rows()]
    return _table(["layer", "kind", "output W×H×D", "receptive field", "params", "FLOPs"], rows,
                  {3, 4, 5})


def metrics_table(meta: dict[str, Any]) -> str:
    rows = [["validation accuracy (search)", f"{meta['value']:.4f}"]]
    if meta.get("search_test_acc") is not None:
        rows.append(["test accuracy (search's model)", f"{meta['search_test_acc']:.4f}"])
    if meta.get("retrained"):
        r = meta["retrained"]
        rows.append([f"test accuracy (retrained on train+val, {len(r['test_acc'])} seeds)",
                     f"{r['mean']:.4f} ± {r['std']:.4f}"])
        rows.append(["test accuracy (these weights, seed " + str(r["seed"]) + ")",
                     f"{r['this_seed']:.4f}"])
    rows += [["parameters", f"{meta['params']:,}"], ["FLOPs per image", f"{meta['flops']:,}"]]
    if meta.get("latency_ms") is not None:  # measured by the search, untrained weights
        rows.append([f"latency per forward pass (search, {meta['latency_device']})",
                     f"{meta['latency_ms']:.3f} ms"])
    return _table(["metric", "value"], rows, {1})


def _recipe(spec: ArchSpec) -> str:
    t = spec.train
    text = (f"{t.optimizer} (lr {t.lr:.3g}, weight decay {t.weight_decay:.3g}"
            + (f", momentum {t.momentum:.3g}" if t.optimizer == "sgd" else "")
            + f"), {t.schedule} schedule, batch {t.batch_size}, {t.epochs} epochs, "
            f"label smoothing {t.label_smoothing:.3g}")
    if t.crop_padding:
        text += f", random crops (padding {t.crop_padding})"
    return text + (", horizontal flips" if t.flip else "")


def _how_to_load(fmt: str, shape: str) -> str:
    blocks = [
        "With PyTorch alone (no automl-cnn needed), from this folder:\n\n```python\n"
        "import torch\nfrom model import load\n\n"
        "net = load(\".\")  # eval mode\n"
        f"logits = net(torch.rand(4, {shape}))  # floats in [0, 1]\n```",
        "With automl-cnn installed:\n\n```python\nfrom automl_cnn.checkpoint import "
        "load_checkpoint\n\nnet, spec, meta = load_checkpoint(\"path/to/this/folder\")\n```",
    ]
    if fmt == "torchscript":
        blocks.append("TorchScript (no Python class needed):\n\n```python\nimport torch\n\n"
                      "net = torch.jit.load(\"model.torchscript.pt\")\n```")
    if fmt == "onnx":
        blocks.append("ONNX Runtime (input `images`, output `logits`, any batch size):\n\n"
                      "```python\nimport numpy as np\nimport onnxruntime as ort\n\n"
                      "session = ort.InferenceSession(\"model.onnx\")\n"
                      f"logits, = session.run(None, {{\"images\": np.random.rand(4, {shape})"
                      ".astype(np.float32)})\n```")
    return "\n\n".join(blocks)


def model_card(spec: ArchSpec, meta: dict[str, Any], *, files: list[str]) -> str:
    """README.md text for an export; ``meta`` is the export's meta.json."""
    shape = tuple(meta["input_shape"])
    origin = (f"weights retrained from scratch on train+validation (seed "
              f"{meta['retrained']['seed']})"
              if meta.get("retrained") else "the weights the search trained")
    classes = ", ".join(map(str, meta.get("classes", []))) or "(unnamed)"
    return "\n\n".join([
        f"# {meta['study_name']}: rank {meta['rank']} (trial {meta['trial']})",
        f"A convolutional network found by automl-cnn on the `{meta['dataset']}` dataset, "
        f"exported with {origin}.",
        "## Metrics\n\n" + metrics_table(meta),
        f"## Input and output\n\nInput: float images of shape (B, {', '.join(map(str, shape))})"
        f" with pixel values scaled to [0, 1] (uint8 / 255). Output: (B, {meta['num_classes']}) "
        f"logits over the classes {classes}."
        + (" In eval mode the network averages its logits over each image and its mirror "
           "image (flip test-time augmentation, `head.tta` in arch.json): twice the inference "
           "cost of one pass." if spec.head.tta == "flip" else "")
        + (f" It is an ensemble of {len(spec.networks)} networks trained separately (the search's"
           " finalists, too close on validation to tell apart): it outputs the mean of their "
           "log-probabilities, at the sum of their costs. The layers below are the first "
           "network's; `members` in arch.json holds the others." if spec.members else ""),
        "## Layers\n\n"
        + layer_table(spec.lead, shape, meta["num_classes"]),  # type: ignore[arg-type]
        f"Training recipe found by the search: {_recipe(spec)}.",
        "## How to load\n\n" + _how_to_load(meta["format"], ", ".join(map(str, shape))),
        "## Files\n\n" + "\n".join(f"- `{name}`" for name in files),
    ]) + "\n"
