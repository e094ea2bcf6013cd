"""The MLflow UI as a user sees it, in a real browser: two tiny ci-preset runs trained and evaluated
by `sartm train --evaluate`, served by `sartm tracking ui`, opened in headless Chromium (Debian's
`chromium` and `chromium-driver`, driven by Selenium) at the link the command prints; then the
bare address in a fresh browser profile, as the README describes it (MLflow 3.17's GenAI / Model
training mode: Model training until the user picks GenAI, sartm/tracking_ui_app.py)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal

import psutil
import pytest
from click.testing import CliRunner
from engine_helpers import start_tracking_ui

from sartm.cli import cli
from sartm.config import save_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="no chromium / chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]
RUN_LINK = re.compile(r"^MLflow run (\w+): (http://\S+)$", re.M)
CELL = """return [...document.querySelectorAll("[row-id='" + arguments[0] + "'] [col-id='"
                   + arguments[1] + "']")].map(e => e.innerText.trim()).join(" ")"""  # runs table
HEADERS = "return [...document.querySelectorAll('[role=columnheader]')].map(e => e.innerText)"
MODE_KEY = "mlflow.workflowType_v1"  # where MLflow 3.17's UI keeps its sidebar switch's choice


def _cell(driver, run_id: str, column: str) -> str:
    """The text of one cell of the runs table (rows carry the run id, cells the column key)."""
    return driver.execute_script(CELL, run_id, column)


def _mode(driver) -> str | None:
    """The UI's mode as its sidebar shows it: GenAI lists Judges, Model training lists Runs."""
    from selenium.webdriver.common.by import By

    sidebar = driver.find_element(By.TAG_NAME, "body").text.split("\n")
    if "Judges" in sidebar:
        return "genai"
    return "machine_learning" if "Runs" in sidebar else None


def _open_fresh(driver, url: str) -> None:
    """A page load as when an address is typed (not a hash change inside the running app)."""
    driver.get("about:blank")
    driver.get(url)


def _train_two_runs(cfg_factory, tmp_path) -> dict[str, list[tuple[str, str]]]:
    """`sartm train --evaluate` for two runs of the ci preset: {run: [(MLflow run id, link)]}."""
    printed = {}
    runner = CliRunner()
    settings = ("train.epochs=1", "train.similarity_epochs=[]", "eval.tsne_pixels=0",
                "eval.modality_robustness=false")  # fmt: skip
    with runner.isolated_filesystem(temp_dir=tmp_path):
        for run in ("no-language", "ce-s0"):
            config_file = tmp_path / f"{run}.yaml"
            save_config(cfg_factory(*settings, run=run), config_file)
            result = runner.invoke(
                cli, ["train", "--config", str(config_file), "--evaluate", "--quiet"]
            )
            assert result.exit_code == 0, result.output
            printed[run] = RUN_LINK.findall(result.output)  # the training run, its evaluation
            assert len(printed[run]) == 2, result.output
    return printed


@pytest.fixture
def new_browser(tmp_path):
    """Starts headless Chromium, each call with a fresh profile of its own (no localStorage)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start():
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = tmp_path / f"chromium-{len(drivers)}"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=2600,1400", f"--user-data-dir={profile}"):  # fmt: skip
            options.add_argument(arg)
        drivers.append(webdriver.Chrome(service=Service(DRIVER), options=options))
        return drivers[-1]

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


def test_runs_page_and_run_page_in_a_browser(cfg_factory, tmp_path, new_browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    printed = _train_two_runs(cfg_factory, tmp_path)
    config_file = tmp_path / "no-language.yaml"
    log = tmp_path / "ui.log"
    ui, port = start_tracking_ui(config_file, tmp_path, log)
    sartm_ui, server = psutil.Process(ui.pid), []
    try:
        server = sartm_ui.children(recursive=True)
        (runs_page,) = re.findall(r"^runs of 'sartm-ci': (\S+)$", log.read_text(), re.M)
        (experiment_id,) = re.findall(r"#/experiments/(\w+)/runs\?", runs_page)

        # The runs page as linked: model-training mode (no switching), each training run with its
        # evaluation under it, and the saved view's metric and preset columns.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=cfg_factory().tracking.uri)
        browser = new_browser()
        browser.get(runs_page)
        wait = WebDriverWait(browser, 90, poll_frequency=0.5)
        names = {}
        for run, ((train_id, _), (eval_id, _)) in printed.items():
            names.update({train_id: f"pst900/{run}", eval_id: f"pst900/{run} evaluate test"})
        wait.until(lambda d: all(_cell(d, i, "attributes.`Run Name`").endswith(n)
                                 for i, n in names.items()))  # fmt: skip
        for (train_id, _), (eval_id, _) in printed.values():
            score = client.get_run(eval_id).data.metrics["eval/test_miou"]
            assert _cell(browser, eval_id, "metrics.`eval/test_miou`") == repr(score)
            assert _cell(browser, train_id, "tags.`preset`") == "ci"
            assert _cell(browser, train_id, "attributes.`Dataset`").startswith("synth-pst900/train")
        headers = browser.execute_script(HEADERS)
        assert {"Run Name", "Dataset", "eval/test_miou", "test_miou", "preset"} <= set(headers)
        sidebar = browser.find_element(By.TAG_NAME, "body").text.split("\n")
        assert "Runs" in sidebar and "Judges" not in sidebar  # model training, not GenAI
        (eval_id, eval_link) = printed["ce-s0"][1]

        # The evaluation's page at the link `sartm train` printed: description, dataset,
        # source, model and per-class scores; then its artifacts.
        browser.get(eval_link.replace(":5000/", f":{port}/"))
        body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
        wait.until(lambda d: "eval/test_iou/background" in body(d))
        for text in ("Read by the report's tables", "synth-pst900/test", "sartm evaluate",
                     "pst900-ce-s0", "Parent run"):  # fmt: skip
            assert text in body(browser), text
        tab = browser.find_element(
            By.XPATH, "//*[@role='tab' or self::a][normalize-space()='Artifacts']"
        )
        tab.click()
        wait.until(lambda d: "predictions" in body(d) and "Select a file to preview" in body(d))
        assert "eval" in body(browser).split()

        # The bare address in a fresh browser, which has not picked a mode: its home page, then the
        # preset's experiment clicked there, opens the runs in Model training mode (the script
        # sartm's app puts into index.html stores that mode, as the sidebar switch would).
        browser = new_browser()
        wait = WebDriverWait(browser, 90, poll_frequency=0.5)
        home = f"http://127.0.0.1:{port}/"
        stored = f"return localStorage.getItem('{MODE_KEY}')"
        _open_fresh(browser, home)
        wait.until(lambda d: d.find_elements(By.LINK_TEXT, "sartm-ci"))
        assert browser.execute_script(stored) == '"machine_learning"'
        browser.find_element(By.LINK_TEXT, "sartm-ci").click()
        wait.until(lambda d: all(_cell(d, i, "attributes.`Run Name`").endswith(n)
                                 for i, n in names.items()))  # fmt: skip
        assert f"#/experiments/{experiment_id}/runs" in browser.current_url
        assert _mode(browser) == "machine_learning"
        assert {"Run Name", "Dataset"} <= set(browser.execute_script(HEADERS))
        for (train_id, _), _evaluation in printed.values():
            assert _cell(browser, train_id, "attributes.`Dataset`").startswith("synth-pst900/train")

        # The user's choice wins: GenAI picked once with the switch, the next loads of the home
        # page (the experiment clicked there) and of the runs' address stay in GenAI mode.
        browser.find_element(By.XPATH, "//*[@role='button'][normalize-space()='GenAI']").click()
        wait.until(lambda d: _mode(d) == "genai")
        assert browser.execute_script(stored) == '"genai"'
        at_experiment = f"#/experiments/{experiment_id}"
        bare = f"http://127.0.0.1:{port}/{at_experiment}/runs"
        for page in (home, bare):
            _open_fresh(browser, page)
            if page == home:
                wait.until(lambda d: d.find_elements(By.LINK_TEXT, "sartm-ci"))
                browser.find_element(By.LINK_TEXT, "sartm-ci").click()
            wait.until(lambda d: at_experiment in d.current_url and _mode(d) is not None)
            assert _mode(browser) == "genai", page
            assert browser.execute_script(stored) == '"genai"', page
        _open_fresh(browser, runs_page)  # a link still opens the runs, and keeps that choice
        (train_id, _), _evaluation = printed["ce-s0"]
        wait.until(lambda d: _cell(d, train_id, "attributes.`Run Name`").endswith("pst900/ce-s0"))
        assert _mode(browser) == "machine_learning"
        assert browser.execute_script(stored) == '"genai"'

        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
        gone, alive = psutil.wait_procs(server, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
    finally:  # whatever is left of what this test started, by process (psutil checks the pid)
        for proc in [sartm_ui, *server]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
