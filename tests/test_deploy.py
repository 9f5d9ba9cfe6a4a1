"""The cluster recipes in deploy/ are valid for the tools that run them, checked offline.

Kubernetes manifests against the API schemas bundled in ``kubernetes-validate`` (strict: an
unknown or misspelled field fails); the compose files against the Compose Specification's JSON
schema (vendored in tests/data/compose-spec/, Apache-2.0); the sbatch script with ``bash -n``.
Beyond the schemas, the recipes must say what the issue asks: N workers running the same
``search --join`` command, GPU requests, an indexed Job, a one-shot report.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from automl_cnn.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S_VERSION = "1.33.0"


def k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("name,doc", k8s_docs(),
                         ids=lambda v: v if isinstance(v, str) else v.get("kind", "?"))
def test_kubernetes_manifests_validate_strictly(name: str, doc: dict) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    if doc["kind"] == "Job":  # the validator does catch a misspelled field
        broken = {**doc, "spec": {**doc["spec"], "parallelizm": 4}}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _kind(kind: str, name: str) -> dict:
    return next(d for _, d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_search_job_is_an_indexed_gpu_job_of_join_workers() -> None:
    job = _kind("Job", "automl-search")["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] == 4
    container = job["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    command = " ".join(container["args"])
    assert "automl-cnn search --join" in command and "--storage" in command
    report = _kind("Job", "automl-report")["spec"]["template"]["spec"]["containers"][0]
    assert "automl-cnn dashboard" in " ".join(report["args"])


def test_compose_files_follow_the_compose_spec() -> None:
    schema = json.loads((Path(__file__).parent / "data" / "compose-spec" /
                         "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    for path in sorted(DEPLOY.glob("compose*.yaml")):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
                  for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, f"{path.name}: {errors}"
    broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    broken["services"]["worker"]["deploy"]["replicas"] = "four"
    assert not validator.is_valid(broken)


def test_compose_runs_n_join_workers_a_server_and_a_report() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"postgres", "mlflow", "worker", "report"} <= set(services)
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2 and worker["command"][:2] == ["search", "--join"]
    gpu = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())["services"]["worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def worker_commands() -> list[list[str]]:
    """Every `automl-cnn search ...` command line the recipes run."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    commands = [services["worker"]["command"]]
    job = _kind("Job", "automl-search")["spec"]["template"]["spec"]["containers"][0]
    commands.append(shlex.split(" ".join(job["args"]).replace("exec automl-cnn ", ""),
                                posix=True))
    return commands


@pytest.mark.parametrize("argv", worker_commands(), ids=["compose", "k8s"])
def test_recipe_commands_parse_with_the_real_cli(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.join and args.storage and args.trials >= 1


def test_the_sbatch_script_is_valid_bash_for_a_gpu_array() -> None:
    script = DEPLOY / "slurm" / "search.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "#SBATCH --array=" in text and "#SBATCH --gres=gpu:1" in text
    assert "automl-cnn search --join" in text
