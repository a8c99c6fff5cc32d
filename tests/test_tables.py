"""Tables: the paper's layout, percentages, and the side-by-side comparison."""
import json

import pandas as pd
import pytest

from pipeline_src.tables import write_tables

COLUMNS = ["clean", "fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8", "cw"]


def write_eval(path, ln, la, acc):
    path.write_text(json.dumps({"lambda_n": ln, "lambda_a": la, "accuracy": {c: acc for c in COLUMNS}}))
    return path


def test_table_rows_follow_given_order_and_compare_with_paper(tmp_path, repo):
    evals = [write_eval(tmp_path / "a.json", 0.0, 0.0, 0.5), write_eval(tmp_path / "b.json", 0.1, 0.0, 0.8125)]
    out, vs = tmp_path / "t.csv", tmp_path / "t_vs.csv"
    write_tables(evals, COLUMNS, out, repo / "paper" / "table1_skin_resnet18_ablation.csv", vs)
    lines = out.read_text().splitlines()
    assert lines[0] == "lambda_n,lambda_a," + ",".join(COLUMNS)
    assert lines[1] == "0,0," + ",".join(["50.00"] * 6)
    assert lines[2].startswith("0.1,0,81.25,")
    comparison = pd.read_csv(vs)
    row = comparison[(comparison.lambda_n == 0.1) & (comparison.metric == "clean")].iloc[0]
    assert (row.ours, row.paper) == (81.25, 81.32) and row["diff"] == pytest.approx(-0.07)
    assert list(comparison.metric[:6]) == COLUMNS


def test_rows_missing_from_the_paper_get_an_empty_paper_cell(tmp_path, repo):
    evals = [write_eval(tmp_path / "a.json", 3.0, 3.0, 0.5)]
    vs = tmp_path / "vs.csv"
    write_tables(evals, COLUMNS, tmp_path / "t.csv", repo / "paper" / "table2_chest_resnet18.csv", vs)
    comparison = pd.read_csv(vs)
    assert comparison.paper.isna().all() and comparison["diff"].isna().all()


def test_missing_attack_in_an_evaluation_is_reported(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"lambda_n": 0, "lambda_a": 0, "accuracy": {"clean": 0.5}}))
    with pytest.raises(ValueError, match="no accuracy for fgsm_eps4"):
        write_tables([path], COLUMNS, tmp_path / "t.csv", None, None)
