"""configs/real_cpu.yaml and its folder twin: valid, and the same experiment apart from where the images come from."""
from __future__ import annotations

import csv

import pytest

from pipeline_src.config import TrainConfig, load_params, validate_params

KEY_ROWS = [{"lambda_n": 0, "lambda_a": 0}, {"lambda_n": 1, "lambda_a": 0}, {"lambda_n": 0, "lambda_a": 10},
            {"lambda_n": 1, "lambda_a": 10}]


def merged(repo, name: str) -> dict:
    cfg = load_params(repo / "params.yaml", repo / "configs" / f"{name}.yaml")
    assert cfg.pop("run") == name  # the run's name (a top-level key the lead's schema adds)
    return validate_params(cfg, f"configs/{name}.yaml")


@pytest.mark.parametrize("name", ["real_cpu", "real_cpu_folder"])
def test_profile_validates_with_its_table1_rows_at_64_px(repo, name):
    cfg = merged(repo, name)
    assert cfg["tables"]["table1_skin4_resnet18"]["dataset"] == "isic2018"
    rows = cfg["tables"]["table1_skin4_resnet18"]["rows"]
    if name == "real_cpu":  # ~3,500 training images: the four key rows keep it near 2 hours
        assert rows == KEY_ROWS
    else:  # 621 training images: all of Table 1, the published rows in their order
        with (repo / "paper" / "table1_skin_resnet18_ablation.csv").open() as fh:
            assert rows == [{k: float(r[k]) for k in ("lambda_n", "lambda_a")} for r in csv.DictReader(fh)]
    assert cfg["tables"]["table2_chest3_resnet18"]["dataset"] == "rsna"
    assert len(cfg["tables"]["table2_chest3_resnet18"]["rows"]) == 4
    for ds in ("isic2018", "rsna"):
        assert cfg["datasets"][ds]["image_size"] == 64
    # a chest X-ray is never flipped upside down, whatever the training default
    chest = TrainConfig.from_params(cfg, "resnet18", 1, 10, cfg["seed"], dataset="rsna")
    assert chest.flips in (None, "horizontal")


def test_folder_twin_differs_only_in_the_image_source(repo):
    real, twin = merged(repo, "real_cpu"), merged(repo, "real_cpu_folder")
    for key in ("training", "model", "attacks", "whitebox", "surrogate", "evaluation"):
        assert real[key] == twin[key], key
    table1 = "table1_skin4_resnet18"
    assert {k: v for k, v in real["tables"].items() if k != table1} == \
        {k: v for k, v in twin["tables"].items() if k != table1}
    assert all(row in twin["tables"][table1]["rows"] for row in real["tables"][table1]["rows"])  # a superset
    assert {k: v for k, v in real["tables"][table1].items() if k != "rows"} == \
        {k: v for k, v in twin["tables"][table1].items() if k != "rows"}
    source_keys = {"source", "raw_dir", "lesion_aware", "path", "channels", "split", "caps"}
    for ds in ("isic2018", "rsna"):
        a = {k: v for k, v in real["datasets"][ds].items() if k not in source_keys}
        b = {k: v for k, v in twin["datasets"][ds].items() if k not in source_keys}
        assert a == b, ds
    assert twin["datasets"]["isic2018"]["source"] == "folder" and real["datasets"]["isic2018"]["source"] == "isic2018"


def test_seeds_overlay_changes_only_the_seeds_and_table1s_rows(repo):
    """configs/real_cpu_folder_seeds.yaml goes over real_cpu_folder.yaml: the same experiment, three seeds."""
    folder = merged(repo, "real_cpu_folder")
    cfg = load_params(repo / "params.yaml", repo / "configs" / "real_cpu_folder.yaml",
                      repo / "configs" / "real_cpu_folder_seeds.yaml")
    assert cfg.pop("run") == "real_cpu_folder_seeds"  # its own run folder: the eight-row tables stay as they are
    cfg = validate_params(cfg, "configs/real_cpu_folder_seeds.yaml")
    assert cfg["seeds"] == [0, 1, 2] and cfg["seed"] == folder["seed"]
    assert cfg["tables"]["table1_skin4_resnet18"]["rows"] == KEY_ROWS
    for key in ("datasets", "training", "model", "attacks", "surrogate", "evaluation"):
        assert cfg[key] == folder[key], key
