"""Does a shorter second training still add to the average? (``final_fit.MIN_SEED_SHARE``)

The first baseline (VGG-style, flips averaged) trains on clutter:3600's train + validation to
its 96-epoch cap; then, for each share, a second training of it with another seed is given that
share of the first's time, its schedule annealed by the clock (as ``more_seeds`` does). Prints,
per pair of seeds, each network's test accuracy and the average's, and the gain over the first
alone. About 12 minutes on a 2-core CPU.

    python benchmarks/bench_seed_share.py
"""
import json
from dataclasses import replace
import optuna
from automl_cnn.data import load_dataset
from automl_cnn.device import resolve_device
from automl_cnn.evaluation import evaluate
from automl_cnn.final_fit import FinalPlan, fit_final
from automl_cnn.network import Ensemble
from automl_cnn.search_spaces import load_space
from automl_cnn.training import silence_lightning

silence_lightning()
optuna.logging.set_verbosity(optuna.logging.WARNING)
data = load_dataset("clutter:3600", seed=0)
space = load_space("default")
spec = space.sample(optuna.trial.FixedTrial(space.baselines[0].params), flip_ok=data.flip_ok)
spec = replace(spec, head=replace(spec.head, tta="flip"))
dev = resolve_device("cpu")
rows = []
for pair in (0, 1):
    first = fit_final(spec, data, dev, seed=100 + pair, plan=FinalPlan(96, None, 2000.0),
                      max_seconds=2000.0)
    t1 = first.seconds
    a1 = evaluate(first.model, data.x_test, data.y_test)["accuracy"]
    row = {"pair": pair, "first_s": round(t1, 1), "first_epochs": len(first.history), "first": a1}
    for share in (0.33, 0.45):
        s = share * t1
        second = fit_final(spec, data, dev, seed=200 + pair + int(share * 100),
                           plan=FinalPlan(96, None, s), max_seconds=s)
        a2 = evaluate(second.model, data.x_test, data.y_test)["accuracy"]
        avg = evaluate(Ensemble([first.model, second.model]).eval(), data.x_test, data.y_test)
        row[f"share{share}"] = {"epochs": len(second.history), "alone": a2,
                                "average": avg["accuracy"], "gain": avg["accuracy"] - a1}
    print(json.dumps(row), flush=True)
