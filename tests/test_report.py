"""What people look at, from the smoke run: the statistics CSVs, the figures (also in MLflow), the
Snakemake HTML report, and the summary `make run` prints."""
from __future__ import annotations

import base64
import math
import struct
from pathlib import Path
import subprocess
import sys

import pandas as pd
import pytest

from pipeline_src.config import load_params, validate_params
from pipeline_src.figures import TABLE_FIGURES
from pipeline_src.plan import build_plan
from pipeline_src.summary import summary
from workflow_helpers import REPO, SMOKE, hermetic_env

PLAN = build_plan(validate_params(load_params(REPO / "params.yaml", SMOKE)))
FIGURES = [f"{t}_{k}.png" for t in PLAN.tables for k in TABLE_FIGURES] + [f"{d}_attacks.png" for d in PLAN.datasets]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert b"Software" not in data and b"tIME" not in data, f"{path} carries a tool version or a timestamp"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
@pytest.mark.parametrize("table", list(PLAN.tables))
def test_stats_agree_with_the_table_and_test_against_na(smoke_run, table):
    ours = pd.read_csv(smoke_run / "results" / "tables" / f"{table}.csv", dtype={"lambda_n": str, "lambda_a": str})
    stats = pd.read_csv(smoke_run / "results" / "tables" / f"{table}_stats.csv",
                        dtype={"lambda_n": str, "lambda_a": str, "reference": str})
    assert len(stats) == len(ours) * (len(ours.columns) - 2)
    for _, line in stats.iterrows():
        row = ours[(ours["lambda_n"] == line["lambda_n"]) & (ours["lambda_a"] == line["lambda_a"])]
        assert row[line["metric"]].item() == pytest.approx(line["accuracy"], abs=0.006)
        assert 0 <= line["ci_low"] <= line["accuracy"] <= line["ci_high"] <= 100
        is_na = line["lambda_n"] == "0" and line["lambda_a"] == "0"
        assert math.isnan(line["mcnemar_p"]) == is_na
        if not is_na:
            assert line["reference"] == "0/0" and 0 < line["mcnemar_p"] <= 1
            # the accuracy difference is exactly the discordant pairs' balance
            na = stats[(stats["lambda_n"] == "0") & (stats["lambda_a"] == "0") & (stats["metric"] == line["metric"])]
            diff = (line["better"] - line["worse"]) / line["n_test"] * 100
            assert line["accuracy"] - na["accuracy"].item() == pytest.approx(diff, abs=0.02)


@pytest.mark.slow
def test_every_figure_is_a_png_and_logged_to_mlflow(smoke_run):
    from mlflow.tracking import MlflowClient

    for name in FIGURES:
        width, height = png_size(smoke_run / "results" / "figures" / name)
        assert width >= 300 and height >= 100, name
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    logged, stats = set(), set()
    exp = client.get_experiment_by_name("xue2019-denoising-cnn/default")
    for run in client.search_runs([exp.experiment_id], "tags.stage = 'figures'"):
        logged |= {a.path.removeprefix("figures/") for a in client.list_artifacts(run.info.run_id, "figures")}
        stats |= {a.path.removeprefix("tables/") for a in client.list_artifacts(run.info.run_id, "tables")}
    assert logged == set(FIGURES)
    assert stats == {f"{t}_stats.csv" for t in PLAN.tables}


@pytest.mark.slow
def test_snakemake_report_holds_the_tables_figures_and_captions(smoke_run, tmp_path):
    out = tmp_path / "report.html"  # not in the smoke run's results/, which another test compares byte by byte
    result = subprocess.run([sys.executable, "-m", "snakemake", "--report", str(out)], cwd=smoke_run,
                            capture_output=True, text=True, timeout=300, env=hermetic_env())
    assert result.returncode == 0, result.stderr[-3000:]
    html = out.read_text()
    for name in [*FIGURES, *(f"{t}_stats.csv" for t in PLAN.tables), *(f"{t}.csv" for t in PLAN.tables)]:
        assert name in html, name
    assert "exact McNemar test against the NA row" in html  # a caption from workflow/report/
    for name in ("table4_skin4_combined.csv", "table4_skin4_combined_vs_paper.csv",
                 *(f"whitebox_{t}.csv" for t in PLAN.whitebox_tables)):
        assert name in html, name  # every table the run made, beyond Tables 1-3 too


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.heavy
@pytest.mark.slow
def test_the_report_in_a_browser_shows_table4_and_a_whitebox_table(smoke_run, tmp_path):
    """The HTML report as a reader opens it: headless Chromium clicks through to Table 4 and a white-box table
    and sees their rows (the report renders its tables with JavaScript, so a text search of the file is not
    enough)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium), as .ci/run does")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is absent: pip install -e '.[test]'")
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "snakemake", "--report", str(out)], cwd=smoke_run,
                            capture_output=True, text=True, timeout=300, env=hermetic_env())
    assert result.returncode == 0, result.stderr[-3000:]
    wb_table = PLAN.whitebox_tables[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(out.as_uri(), timeout=60_000)
            for subcategory, content, name, cell, caption in (
                    ("table4_skin4_combined", "as in the paper", "table4_skin4_combined", "HGD*+Ln+La",
                     "Table 4 of the paper, ours"),
                    (wb_table, "white-box (beyond the paper)", wb_table, "pgd20_eps8", "crafted on each model itself")):
                page.goto(out.as_uri(), timeout=60_000)
                page.get_by_text("Tables", exact=True).first.click(timeout=60_000)
                page.get_by_text(subcategory, exact=True).first.click(timeout=60_000)
                page.get_by_text(content, exact=True).first.click(timeout=60_000)
                row = page.locator("tr", has_text=name).last
                # the eye opens the CSV (a data URI the report embeds), the (i) its caption
                href = row.locator("a[iconname=eye]").get_attribute("href", timeout=60_000)
                csv = base64.b64decode(href.split("base64,", 1)[1]).decode()
                assert cell in csv, csv[:300]
                row.locator("a[iconname=information-circle]").click(timeout=60_000)
                page.get_by_text(caption, exact=False).first.wait_for(timeout=60_000)
                page.screenshot(path=str(tmp_path / f"{subcategory}.png"))
        finally:
            browser.close()


@pytest.mark.slow
def test_summary_says_where_results_are_and_how_to_open_mlflow_on_localhost(smoke_run, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    text = summary(smoke_run)
    assert f"{smoke_run}/results/tables/" in text and f"({len(FIGURES)} PNGs)" in text
    assert f"--backend-store-uri sqlite:///{smoke_run / 'mlflow.db'}" in text
    assert "--host 127.0.0.1" in text and "--workers 1" in text
    # `make run` ends with the headline in words and numbers: the last lines, one per paper table
    last = text.rstrip("\n").split("\n")
    assert last[-1].startswith("Full tables:"), last[-3:]
    assert any(line.startswith("table2_chest3_resnet18: NA ") and "best defended row" in line and "%" in line
               for line in last[-4:]), last[-4:]
