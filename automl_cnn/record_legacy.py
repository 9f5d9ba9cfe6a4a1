"""Studies written by automl-cnn 0.1.0 kept one user attribute per value (``arch``,
``outcome``, ``params`` ...). :func:`legacy_attrs` turns those into the dict that
:meth:`automl_cnn.record.TrialRecord.to_attrs` writes today, so old run directories still
rank, report and export.

Example:
    >>> legacy_attrs({"outcome": "pruned", "pruned_epoch": 2})["pruned_epoch"]
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def legacy_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """0.1.0's flat user attributes as a record dict (empty values where they are absent)."""
    arch = attrs.get("arch")
    plan = None
    if "params" in attrs and "flops" in attrs:
        plan = {"params": int(attrs["params"]), "flops": int(attrs["flops"]),
                "receptive_field": int(attrs.get("receptive_field", 0)),
                "depth": len(arch.get("blocks", ())) if isinstance(arch, dict) else 0,
                "layer_plan": list(attrs.get("layer_plan") or ())}
    budget = attrs.get("epochs_budget")
    spec_epochs = (arch or {}).get("train", {}).get("epochs") if isinstance(arch, dict) else None
    return {
        "outcome": attrs.get("outcome"), "reason": attrs.get("reason"), "spec": arch,
        "plan": plan, "history": list(attrs.get("history") or ()),
        "pruned_epoch": attrs.get("pruned_epoch"),
        # a budget that differs from the spec's own epochs was a lower fidelity
        "fidelity": {"epochs": int(budget)} if budget is not None and budget != spec_epochs
        else None,
        "timings": {"train_seconds": float(attrs.get("train_seconds", 0.0))},
        "baseline": attrs.get("baseline"),
    }
