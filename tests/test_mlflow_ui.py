"""The MLflow UI as a user sees it: `mlflow server` over the smoke run's store, opened in headless Chromium.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it) and playwright's Python package (the
test extra); the browser is never downloaded (no `playwright install`). Skips with the reason otherwise.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_src.plan import build_plan
from pipeline_src.config import load_params, validate_params
from workflow_helpers import REPO, SMOKE, free_port, hermetic_env, wait_until_up

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def ui_workdir(tmp_path_factory) -> Path:
    """The test's own folder (the server's cwd, the screenshot's results/): the smoke run's results/ stay
    exactly what the workflow wrote."""
    return tmp_path_factory.mktemp("mlflow_ui")


@pytest.fixture(scope="module")
def mlflow_server(smoke_run, ui_workdir):
    """`mlflow server` on 127.0.0.1 over the smoke run's sqlite store: one worker, no job runner, in its own
    process group (ended as a group: the server forks workers)."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri",
           f"sqlite:///{smoke_run / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (ui_workdir / "mlflow_server.log").open("w")
    server = subprocess.Popen(cmd, cwd=ui_workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              env=hermetic_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server)
        yield url
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            pass
        log.close()


@pytest.mark.heavy
@pytest.mark.slow
def test_mlflow_ui_shows_the_experiment_and_the_training_runs_with_their_lambdas(smoke_run, ui_workdir,
                                                                                 mlflow_server):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium), as .ci/run does")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is absent: pip install -e '.[test]'")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("xue2019-denoising-cnn/default")  # <project>/<run>
    plan = build_plan(validate_params(load_params(smoke_run / "params.yaml")))
    trained = [m for m in plan.evaluated_models("skin4")]
    shot = ui_workdir / "results" / "mlflow_ui.png"
    shot.parent.mkdir()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # MLflow 3.17: #/experiments/<id> is the GenAI overview; the runs table is #/experiments/<id>/runs
            page.goto(f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs", timeout=60_000)
            # the table lists each invocation's parent run, its jobs' runs nested (collapsed) under it
            page.get_by_text("workflow default-", exact=False).first.wait_for(timeout=60_000)
            assert "skin4" in page.content() or "default" in page.content()
            # as a user would: only the training runs, by the search box (they stay nested under their parent)
            search = page.get_by_placeholder("metrics.rmse < 1", exact=False).first
            search.fill("tags.stage = 'train'")
            search.press("Enter")
            page.get_by_text("matching runs", exact=False).first.wait_for(timeout=60_000)
            # open the parent's row (its expander button, MLflow 3.17's run-name cell) to show its training runs
            parent = page.locator("[role=gridcell]", has=page.get_by_text("workflow default-", exact=False)).first
            parent.locator("button[data-component-id*='runnamecellrenderer']").first.click(timeout=60_000)
            for job in trained:
                page.get_by_text(job.name, exact=True).first.wait_for(timeout=60_000)
            # the lambdas of a training run, as its run page shows them
            run_id = client.search_runs([experiment.experiment_id],
                                        f"tags.stage = 'train' and tags.model = '{trained[-1].name}'")[0].info.run_id
            page.screenshot(path=str(shot), full_page=False)
            page.goto(f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/{run_id}", timeout=60_000)
            page.get_by_text("lambda_a", exact=True).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "lambda_n" in body and "lambda_a" in body
            assert str(trained[-1].lambda_a) in body  # e.g. 10.0, the logged value
            page.get_by_text("lambda_a", exact=True).first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot.with_name("mlflow_ui_run.png")), full_page=False)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000

