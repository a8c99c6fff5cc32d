"""Statistics of the tables: Wilson intervals, exact McNemar, per-image records, seeds averaged."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from pipeline_src.config import validate_params, load_params
from pipeline_src.evaluate import encode_flags
from pipeline_src.plan import build_plan
from pipeline_src.stats import build_stats, decode_flags, mcnemar_exact, to_csv, wilson_interval
from pipeline_src.tables import build_table
from workflow_helpers import REPO

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the reference for the statistics (test extra)")


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (37, 48), (1, 1), (512, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


@pytest.mark.parametrize("better,worse", [(0, 0), (5, 0), (3, 9), (10, 10), (40, 21), (1, 30), (1400, 1600)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(better, worse):
    expected = 1.0 if better + worse == 0 else scipy_stats.binomtest(better, better + worse, 0.5).pvalue
    assert mcnemar_exact(better, worse) == pytest.approx(expected, rel=1e-12)


def test_statsmodels_is_imported_only_when_a_statistic_is_computed():
    """statsmodels costs 1-2 s to import: the jobs that only import pipeline_src.stats must not pay it."""
    code = ("import sys, pipeline_src.stats as s; assert 'statsmodels' not in sys.modules; "
            "s.mcnemar_exact(1, 2); assert 'statsmodels' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 17, 64])
def test_per_image_flags_round_trip(n):
    flags = [random.Random(n).random() < 0.5 for _ in range(n)]
    encoded = encode_flags(flags)
    assert len(encoded) == (n + 3) // 4 and decode_flags(encoded, n) == flags
    with pytest.raises(ValueError, match="does not hold"):
        decode_flags(encoded + "0", n)


def _eval(path, ln, la, seed, flags: dict[str, list[bool]]):
    n = len(next(iter(flags.values())))
    record = {"model": f"m_ln{ln}_la{la}_s{seed}", "lambda_n": ln, "lambda_a": la, "seed": seed, "n_test": n,
              "accuracy": {c: sum(f) / n for c, f in flags.items()}, "correct": {c: sum(f) for c, f in flags.items()},
              "correct_flags": {c: encode_flags(f) for c, f in flags.items()}}
    path.write_text(json.dumps(record))
    return path


def test_stats_pair_each_row_with_the_na_row_image_by_image(tmp_path):
    na = [True] * 6 + [False] * 4  # NA: 6/10
    better = [True] * 10  # right on all of NA's 4 misses: 4 discordant pairs, all one way
    worse = [False, True, True, True, True, True, True, True, True, True]  # loses image 0, wins 6..9
    evals = [_eval(tmp_path / "a.json", 0.0, 0.0, 0, {"clean": na, "fgsm": na}),
             _eval(tmp_path / "b.json", 1.0, 0.0, 0, {"clean": better, "fgsm": na}),
             _eval(tmp_path / "c.json", 1.0, 10.0, 0, {"clean": worse, "fgsm": na})]
    stats = build_stats(evals, ["clean", "fgsm"]).set_index(["lambda_n", "lambda_a", "metric"])
    assert list(stats.index.get_level_values(0)) == ["0", "0", "1", "1", "1", "1"]
    b = stats.loc[("1", "0", "clean")]
    assert (b["better"], b["worse"], b["accuracy"]) == (4, 0, 100.0)
    assert b["mcnemar_p"] == pytest.approx(0.125) and b["reference"] == "0/0"
    c = stats.loc[("1", "10", "clean")]
    assert (c["better"], c["worse"]) == (4, 1) and c["mcnemar_p"] == pytest.approx(0.375)
    assert stats.loc[("1", "0", "fgsm"), "mcnemar_p"] == 1.0  # identical predictions
    assert math.isnan(stats.loc[("0", "0", "clean"), "mcnemar_p"])  # NA is the reference
    assert stats.loc[("0", "0", "clean"), ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [100 * v for v in wilson_interval(6, 10)])
    csv = to_csv(build_stats(evals, ["clean"]))
    assert csv.splitlines()[0] == ("lambda_n,lambda_a,metric,seeds,n_test,accuracy,std,ci_low,ci_high,"
                                   "reference,better,worse,mcnemar_p")
    assert csv.splitlines()[1].startswith("0,0,clean,1,10,60.00,,31.27,83.18,,,,")


def test_several_seeds_give_the_mean_in_the_table_and_the_std_in_the_stats(tmp_path):
    na = [[True] * 5 + [False] * 5, [True] * 7 + [False] * 3]  # seeds 0, 1: 50%, 70%
    row = [[True] * 10, [True] * 8 + [False] * 2]  # 100%, 80%
    evals = []
    for seed in (0, 1):
        evals.append(_eval(tmp_path / f"na{seed}.json", 0.0, 0.0, seed, {"clean": na[seed]}))
        evals.append(_eval(tmp_path / f"r{seed}.json", 1.0, 0.0, seed, {"clean": row[seed]}))
    table = build_table(evals, ["clean"])
    assert table.values.tolist() == [["0", "0", 60.0], ["1", "0", 90.0]]
    stats = build_stats(evals, ["clean"]).set_index(["lambda_n", "metric"])
    assert stats.loc[("0", "clean"), "std"] == pytest.approx(math.sqrt(200))  # sample std of 50, 70
    assert stats.loc[("1", "clean"), "seeds"] == 2
    # seed 0: 5 better; seed 1: NA right on 0..6, row right on 0..7: 1 better -> 6 discordant, all one way
    assert (stats.loc[("1", "clean"), "better"], stats.loc[("1", "clean"), "worse"]) == (6, 0)
    assert stats.loc[("0", "clean"), ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [100 * v for v in wilson_interval(12, 20)])


def test_an_evaluation_without_per_image_record_names_the_file(tmp_path):
    path = _eval(tmp_path / "old.json", 1.0, 0.0, 0, {"clean": [True, False]})
    record = json.loads(path.read_text())
    del record["correct_flags"]
    path.write_text(json.dumps(record))
    na = _eval(tmp_path / "na.json", 0.0, 0.0, 0, {"clean": [True, False]})
    with pytest.raises(ValueError, match=r"old\.json has no per-image record for 'clean'.*re-run"):
        build_stats([na, path], ["clean"])


def test_seeds_default_keeps_model_names_and_several_seeds_train_every_row_per_seed():
    base = load_params(REPO / "params.yaml")
    one = build_plan(validate_params(base))
    assert "skin4_resnet18_ln0_la0_s0" in one.models and "seeds" not in base
    assert build_plan(validate_params({**base, "seeds": [0]})).models.keys() == one.models.keys()
    three = build_plan(validate_params({**base, "seeds": [0, 1, 2]}))
    rows = len(base["tables"]["table2_chest3_resnet18"]["rows"])
    assert [m.seed for m in three.tables["table2_chest3_resnet18"]] == [0, 1, 2] * rows
    assert three.surrogate("skin4").name == one.surrogate("skin4").name  # data and attacks keep `seed`
