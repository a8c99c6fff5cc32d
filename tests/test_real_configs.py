"""configs/paper.yaml plans every table offline; configs/rsna_subset.yaml runs Table 2 on real X-rays."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_helpers import REPO, hermetic_env

SHARED_RSNA = REPO.parent / "shared" / "data" / "rsna_subset_256"
TABLE2 = "results/tables/table2_chest3_resnet18"


def _snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=hermetic_env())


def test_paper_profile_dry_run_plans_every_table_offline(tmp_path):
    result = _snakemake(tmp_path, "--configfile", str(REPO / "configs" / "paper.yaml"), "-n", "-p", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    # 8 + 4 + 4 table rows, no extra surrogate (the NA ResNet18 crafts the attacks: surrogate.source na_model);
    # 5 attacks per dataset; Table 4 reuses Table 1's classifiers (one Reformer, four HGD*); every evaluated
    # model is also attacked white-box
    kinds = ("prepare", "train", "attack", "evaluate", "table", "train_denoiser", "combined_table", "whitebox")
    assert {k: int(counts.get(k, 0)) for k in kinds} == {
        "prepare": 2, "train": 16, "attack": 10, "evaluate": 16, "table": 3, "train_denoiser": 5,
        "combined_table": 1, "whitebox": 16}
    # every torch job asks for one GPU, as the dry run prints its resources (not as params.yaml says them)
    torch_rules = {"train", "attack", "evaluate", "whitebox", "train_denoiser", "evaluate_denoised"}
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, flags=re.M)
    assert len(jobs) == 2 + 16 + 10 + 16 + 16 + 5 + 1 + 2 + 3 * 4 + 1 + 1  # every job, `all` included
    for rule, resources in jobs:
        gpu = re.search(r"\bgpu=(\d+)", resources)
        # (attack_figure draws a figure: no GPU; Table 4's evaluation rule is named after its table)
        if rule in torch_rules or rule.startswith("evaluate_denoised_"):
            assert gpu and gpu.group(1) == "1", (rule, resources)
        else:
            assert gpu is None, (rule, resources)
    for table in ("table1_skin4_resnet18", "table2_chest3_resnet18", "table3_skin4_vgg16", "table4_skin4_combined"):
        assert f"results/tables/{table}.csv" in out
    assert "data/prepared/isic2018/train.pt" in out and "data/prepared/rsna/train.pt" in out
    assert "--dataset isic2018" in out and "--dataset rsna" in out  # jobs are named, values are read by name
    # ... from the run's parameters, which the Snakefile wrote beside its outputs (paths made absolute)
    run = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert run["run"] == "paper" and run["training"]["epochs"] == 80 and run["attacks"]["cw"]["steps"] == 1000
    used = [run["datasets"][name] for name in ("isic2018", "rsna")]
    assert [d["source"] for d in used] == ["isic2018", "rsna"]
    assert {d["image_size"] for d in used} == {224} and run["model"]["vgg_width"] == 1.0
    assert all(Path(d["raw_dir"]).is_absolute() for d in used)  # one download cache for every run
    assert "data/prepared/skin4" not in out and "data/prepared/chest3" not in out  # no synthetic data at all
    assert not (tmp_path / "data").exists()  # planning downloads nothing


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.skipif(not SHARED_RSNA.is_dir(), reason=f"real RSNA subset not present at {SHARED_RSNA}")
def test_rsna_subset_table2_through_the_folder_source(tmp_path):
    overlay = tmp_path / "abs_path.yaml"
    overlay.write_text(f"datasets: {{rsna_subset: {{path: '{SHARED_RSNA}'}}}}\n")
    result = _snakemake(tmp_path, "--configfile", str(REPO / "configs" / "rsna_subset.yaml"), str(overlay),
                        "--cores", "2", f"{TABLE2}.csv", f"{TABLE2}_vs_paper.csv")
    assert result.returncode == 0, result.stderr[-4000:]
    table = pd.read_csv(tmp_path / f"{TABLE2}.csv")
    assert len(table) == 2
    values = table.select_dtypes("number").to_numpy()
    assert ((values >= 0) & (values <= 100)).all()
    summary = (tmp_path / "data" / "prepared" / "rsna_subset" / "summary.json").read_text()
    assert '"n": 800' in summary and '"n": 200' in summary and '"channels": 1' in summary
    assert not (tmp_path / "data" / "prepared" / "skin4").exists()  # only Table 2 was asked for
