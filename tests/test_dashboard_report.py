"""The HTML report: written by every search and by ``automl-cnn dashboard``, self-contained,
honest about what it cannot show yet, and drawn without errors by a real headless Chromium."""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from automl_cnn.cli import main
from automl_cnn.config import SearchConfig
from automl_cnn.dashboards import report_beside_run, write_report
from automl_cnn.record import TrialRecord, read_study_info, records, write_study_info
from automl_cnn.dashboards.synthetic import synthetic_study

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SEARCH_FIGURES = {"history", "learning_curves", "importances", "parallel_coordinates", "slices",
                  "pareto", "timeline", "pruning_savings", "volumes_rank1", "receptive_field",
                  "weight_sharing", "filters", "activations_block1"}


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory):
    """A real 8-trial search on the tiny space (digits), without MLflow."""
    import optuna

    from automl_cnn.runners.search import run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = tmp_path_factory.mktemp("search") / "run"
    return run_search(SearchConfig(trials=8, space="tiny", mlflow=False, out=str(out), seed=0),
                      progress=False)


def figure_names(page: str) -> list[str]:
    return re.findall(r"<figure class='plot' data-name='([^']+)'>", page)


def assert_self_contained(page: str) -> None:
    loaded = re.findall(r"<(?:script|link|img)[^>]*(?:src|href)=", page)
    assert loaded == []  # nothing is loaded from elsewhere ...
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # ... plotly.js itself is inside


@pytest.mark.slow
def test_search_writes_its_report_beside_the_summary(search):
    report = search.run_dir / "report.html"
    summary = json.loads((search.run_dir / "summary.json").read_text())
    assert summary["report"] == str(report) == search.summary["report"]
    page = report.read_text()
    assert_self_contained(page)
    assert SEARCH_FIGURES <= set(figure_names(page))
    assert f"Architecture search: {search.study.study_name}" in page
    best = search.summary["best"]["trial"]
    assert f"Trial {best}: " in page  # the best trial's filters are shown


@pytest.mark.slow
def test_dashboard_command_from_run_dir_and_from_storage(search, tmp_path, capsys):
    out = tmp_path / "from-dir.html"
    assert main(["dashboard", str(search.run_dir), "--out", str(out), "--top-k", "2"]) == 0
    assert f"Report: {out}" in capsys.readouterr().out
    names = figure_names(out.read_text())
    assert "volumes_rank2" in names and "volumes_rank3" not in names
    # From the storage URL alone, the study's own config leads back to the kept weights.
    out2 = tmp_path / "from-storage.html"
    url = f"journal:{search.run_dir / 'study.journal'}"
    assert main(["dashboard", "--storage", url, "--out", str(out2)]) == 0
    assert "filters" in figure_names(out2.read_text())


@pytest.mark.slow
def test_a_report_given_the_searchs_data_does_not_load_it_again(search, tmp_path, monkeypatch):
    # At the end of a search the data is in memory; loading it again cost 2.7 s of a 2-minute
    # budget on clutter (it is generated). Only the network section reads images.
    from automl_cnn.data import load_dataset

    data = load_dataset("digits", seed=0)

    def refuse(*_, **__):
        raise AssertionError("the dataset was loaded again")

    monkeypatch.setattr("automl_cnn.data.load_dataset", refuse)
    result = write_report(search.study, tmp_path / "r.html", run_dir=search.run_dir, data=data)
    assert "activations_block1" in result.figures and "filters" in result.figures


@pytest.mark.slow
def test_report_without_a_run_dir_explains_the_missing_weights(search, tmp_path):
    result = write_report(search.study, tmp_path / "r.html")
    page = result.path.read_text()
    assert "filters" not in result.figures and "No run directory was given" in page


@pytest.mark.slow
def test_png_export_writes_one_png_per_figure(search, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: Kaleido has no browser to draw PNGs with")
    result = write_report(search.study, tmp_path / "r.html", run_dir=search.run_dir, png=True)
    assert result.png_notice is None
    assert [p.stem for p in result.pngs] == list(result.figures)
    for path in result.pngs:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_png_export_without_a_browser_is_skipped_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    result = write_report(synthetic_study(6, seed=1), tmp_path / "r.html", png=True)
    assert result.pngs == [] and "no Chrome or Chromium found" in result.png_notice
    assert result.path.exists()


def test_study_with_no_completed_trial_says_so(tmp_path):
    study = synthetic_study(0, running=3)
    result = write_report(study, tmp_path / "r.html")
    page = result.path.read_text()
    assert "No trial has completed yet" in page and "3 trial(s) still running" in page
    assert {"learning_curves", "timeline", "pruning_savings"} <= set(result.figures)
    assert "history" not in result.figures and "pareto" not in result.figures


def test_study_with_no_trials_at_all(tmp_path):
    result = write_report(synthetic_study(0), tmp_path / "r.html")
    page = result.path.read_text()
    assert "has no trials yet" in page
    assert_self_contained(page)


def test_running_study_is_a_snapshot_of_what_finished(tmp_path):
    study = synthetic_study(40, seed=2, running=2)
    result = write_report(study, tmp_path / "r.html")
    page = result.path.read_text()
    assert "2 trial(s) still running" in page
    assert {"history", "pareto", "importances", "volumes_rank1"} <= set(result.figures)


def test_a_failing_report_never_loses_the_search(tmp_path, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with caplog.at_level(logging.WARNING):
        assert report_beside_run(synthetic_study(3), not_a_dir) is None
    assert "could not write the report" in caplog.text


def test_dashboard_command_rejects_bad_input(tmp_path, capsys):
    def error() -> str:
        return " ".join(capsys.readouterr().err.split())  # unwrapped paragraph

    assert main(["dashboard", str(tmp_path / "missing")]) == 2
    assert "missing' does not exist" in error()
    assert main(["dashboard", str(tmp_path), "--top-k", "0"]) == 2
    assert "--top-k must be at least 1, but got 0" in error()


# -- a real browser -----------------------------------------------------------------------------
RENDERED = """return Array.from(document.querySelectorAll('figure.plot')).map(f =>
    [f.dataset.name, !!f.querySelector('.js-plotly-plot svg.main-svg, .js-plotly-plot canvas')]);"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (CI installs Debian's chromium and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 # No network at all: every request goes to a closed port ...
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                 # ... and parallel coordinates (WebGL) may use the software renderer.
                 "--enable-unsafe-swiftshader", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The system chromedriver: Selenium Manager never downloads a driver.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_and_check(driver, path: Path, expected: set[str]) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    deadline = time.monotonic() + 60
    while True:
        rendered = dict(driver.execute_script(RENDERED))
        if rendered and all(rendered.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert set(rendered) == expected
    assert [name for name, ok in rendered.items() if not ok] == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    # And the network really was off: a CDN request fails.
    probe = driver.execute_async_script(
        "const done = arguments[0]; fetch('https://cdn.plot.ly/plotly-3.0.0.min.js')"
        ".then(() => done('reached'), e => done('blocked'))")
    assert probe == "blocked"


@pytest.mark.slow
def test_browser_draws_every_figure_of_a_real_search_offline(search, browser):
    report = search.run_dir / "report.html"
    expected = set(figure_names(report.read_text()))
    assert SEARCH_FIGURES <= expected
    open_and_check(browser, report, expected)


@pytest.mark.slow
def test_browser_draws_snapshot_and_large_reports(browser, tmp_path):
    for name, study in (("snapshot", synthetic_study(0, running=2)),
                        ("large", synthetic_study(300, seed=4, running=1))):
        result = write_report(study, tmp_path / f"{name}.html")
        open_and_check(browser, result.path, set(result.figures))


def test_multi_objective_study_reports_accuracy(tmp_path):
    import optuna

    single = synthetic_study(30, seed=5)
    multi = optuna.create_study(directions=["maximize", "minimize"])
    write_study_info(multi, dataset=read_study_info(single).dataset)
    for t in single.get_trials():
        record = TrialRecord.from_trial(t)
        if t.values is not None:  # (val_acc, params), as a --objective params search records
            t.values = [t.values[0], float(record.plan.params if record.plan else 2**53)]
        multi.add_trial(t)
    result = write_report(multi, tmp_path / "r.html")
    assert {"history", "importances", "pareto", "volumes_rank1"} <= set(result.figures)
    best = max(r.values[0] for r in records(single) if r.outcome == "complete")
    assert result.figures["history"].data[-1].y[-1] == best
