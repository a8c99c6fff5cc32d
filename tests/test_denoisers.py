"""Table 4: the Reformer and HGD* denoisers, their combinations with the classifiers, and the table."""
from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

import pipeline_src.denoisers as denoisers_mod
import pipeline_src.evaluate as evaluate_mod
from pipeline_src.checkpoints import load_checkpoint
from pipeline_src.combined import read_combined_csv
from pipeline_src.combined_plan import DenoiserConfig
from pipeline_src.config import ParamsError, load_params, validate_params
from pipeline_src.data.prepare import Split
from pipeline_src.denoisers import add_noise, evaluate_denoised, hgd_loss, load_denoiser, train_denoiser
from pipeline_src.io import save_torch
from pipeline_src.models import ModelSpec, build_model
from pipeline_src.models.input_denoisers import DenoiserSpec, DUNet, build_denoiser
from pipeline_src.plan import build_plan
from workflow_helpers import REPO, SMOKE

ATTACKS = ["fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8", "cw"]


def smooth_split(n: int, size: int = 16, seed: int = 0) -> Split:
    """Low-frequency colour images (a 4x4 grid upsampled): what a small auto-encoder can learn in seconds."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return Split(images=(images * 255).round().to(torch.uint8), labels=torch.arange(n) % 4,
                 classes=["a", "b", "c", "d"])


def config(kind: str, **overrides) -> DenoiserConfig:
    base = dict(kind=kind, seed=0, epochs=1, batch_size=8, lr=1e-3, width=8, depth=2, noise="uniform",
                noise_level=0.2, guide="features", threads=1)
    return DenoiserConfig(**{**base, **overrides})


def classifier_file(path, size: int = 32, seed: int = 0) -> str:
    """An untrained ResNet18 checkpoint in the format train.py writes (weights and running stats random)."""
    torch.manual_seed(seed)
    spec = ModelSpec(arch="resnet18", num_classes=4, in_channels=3, image_size=size, decoder_stage="layer1")
    model = build_model(spec)
    with torch.no_grad():  # non-trivial BN running statistics: a classifier left in train mode would change them
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    save_torch({"model": model.state_dict(), "spec": spec.to_dict(),
                "config": {"arch": "resnet18", "lambda_n": 0.0, "lambda_a": 0.0, "seed": seed},
                "classes": ["a", "b", "c", "d"], "history": []}, path)
    return str(path)


def test_reformer_reduces_the_mse_of_noisy_inputs_to_clean_ones(tmp_path):
    train, test = smooth_split(32, seed=0), smooth_split(16, seed=1)
    cfg = config("reformer", epochs=25, lr=3e-3, width=16, noise="gaussian", noise_level=0.1)
    history = train_denoiser(cfg, train, test, tmp_path / "r.pt")
    reformer, saved = load_denoiser(tmp_path / "r.pt")
    assert saved["kind"] == "reformer" and [r["epoch"] for r in history] == list(range(1, 26))
    clean = test.float_images()
    noisy = add_noise(clean, "gaussian", 0.1, torch.Generator().manual_seed(5))
    with torch.no_grad():
        denoised = reformer(noisy)
    assert denoised.min() >= 0 and denoised.max() <= 1  # sigmoid output: already a valid image
    untrained = build_denoiser(DenoiserSpec("reformer", 3, 16)).eval()
    with torch.no_grad():
        before = F.mse_loss(untrained(noisy), clean)
    after, noise_mse = F.mse_loss(denoised, clean), F.mse_loss(noisy, clean)
    assert after < noise_mse < before, (float(after), float(noise_mse), float(before))
    assert history[-1]["test_loss"] < history[0]["test_loss"]


def test_dunet_starts_as_the_identity_and_keeps_images_in_range():
    net = DUNet(3, 8, 3).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), x)
        net.residual.bias.fill_(5.0)
        assert net(x).max() == 1.0  # x_hat = clip(x + r, 0, 1)


def test_hgd_loss_is_the_l1_distance_of_the_classifiers_features(tmp_path):
    classifier = load_checkpoint(classifier_file(tmp_path / "c.pt")).model
    x = torch.rand(4, 3, 32, 32)
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        f_clean = classifier.outputs(x, reconstruct=False).features
        f_hat = classifier.outputs(x_hat, reconstruct=False).features
        logits_clean = classifier(x)
        assert hgd_loss(classifier, x, f_clean, "features") == 0
        expected = (f_hat - f_clean).abs().flatten(1).sum(1).mean()
        assert torch.allclose(hgd_loss(classifier, x_hat, f_clean, "features"), expected)
        assert torch.allclose(hgd_loss(classifier, x_hat, logits_clean, "logits"),
                              (classifier(x_hat) - logits_clean).abs().sum(1).mean())


def test_hgd_training_leaves_the_classifier_unchanged_and_reports_the_feature_l1(tmp_path, monkeypatch):
    path = classifier_file(tmp_path / "c.pt")
    seen = {}
    real_load = denoisers_mod.load_checkpoint

    def spy_load(p, device="cpu"):  # keep the very classifier object the training uses
        seen["ckpt"] = real_load(p, device)
        seen["before"] = {k: v.clone() for k, v in seen["ckpt"].model.state_dict().items()}
        return seen["ckpt"]

    monkeypatch.setattr(denoisers_mod, "load_checkpoint", spy_load)
    train, test = smooth_split(16, size=32, seed=0), smooth_split(8, size=32, seed=1)
    cfg = config("hgd", epochs=2, lr=1e-2)
    history = train_denoiser(cfg, train, test, tmp_path / "h.pt", path)
    after = seen["ckpt"].model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in seen["before"].items())  # weights and BN statistics
    assert all(p.grad is None for p in seen["ckpt"].model.parameters())  # not even a gradient reached it
    denoiser, _ = load_denoiser(tmp_path / "h.pt")
    assert not torch.equal(denoiser.residual.weight, torch.zeros_like(denoiser.residual.weight))  # it learned
    # the reported loss is the L1 feature distance: recompute it on the same fixed noisy test set
    classifier = real_load(path).model
    noisy = add_noise(test.float_images(), cfg.noise, cfg.noise_level, torch.Generator().manual_seed(cfg.seed + 1))
    with torch.no_grad():
        f_clean = classifier.outputs(test.float_images(), reconstruct=False).features
        f_hat = classifier.outputs(denoiser(noisy), reconstruct=False).features
    assert history[-1]["test_loss"] == pytest.approx(float((f_hat - f_clean).abs().flatten(1).sum(1).mean()), rel=1e-5)


def test_a_combination_routes_every_image_through_the_denoiser_before_the_classifier(tmp_path, monkeypatch):
    model_path = classifier_file(tmp_path / "c.pt")
    test = smooth_split(6, size=32, seed=2)
    save_torch({"images": test.images, "labels": test.labels, "classes": test.classes}, tmp_path / "test.pt")
    adv = {"fgsm_eps4": tmp_path / "fgsm.pt"}
    save_torch({"images": 255 - test.images, "labels": test.labels}, adv["fgsm_eps4"])
    denoiser_file = tmp_path / "d.pt"
    spec = DenoiserSpec("hgd", 3, 4, 2)
    save_torch({"model": build_denoiser(spec).state_dict(), "spec": spec.to_dict(),
                "config": {"kind": "hgd"}, "history": []}, denoiser_file)

    calls = []

    class Spy(torch.nn.Module):  # the denoiser: records what it gets and returns a recognisable image
        def forward(self, x):
            calls.append(("denoiser", x.clone()))
            return 1.0 - x

    real_checkpoint = evaluate_mod.load_checkpoint

    def spy_checkpoint(p):
        ckpt = real_checkpoint(p)
        ckpt.model.register_forward_pre_hook(lambda m, args: calls.append(("classifier", args[0].clone())))
        return ckpt

    monkeypatch.setattr(denoisers_mod, "load_denoiser", lambda p: (Spy(), {"kind": "hgd"}))
    monkeypatch.setattr(evaluate_mod, "load_checkpoint", spy_checkpoint)
    result = evaluate_denoised(denoiser_file, model_path, tmp_path / "test.pt", adv, batch_size=4)
    assert [c[0] for c in calls] == ["denoiser", "classifier"] * 4  # 2 sets x 2 batches
    for (_, to_denoiser), (_, to_classifier) in zip(calls[::2], calls[1::2]):
        assert torch.equal(to_classifier, 1.0 - to_denoiser)  # the classifier only sees denoised images
    assert torch.equal(calls[0][1], test.float_images(slice(0, 4)))
    assert set(result["accuracy"]) == {"clean", "fgsm_eps4"} and result["n_test"] == 6
    assert {"arch", "lambda_n", "lambda_a", "seed", "correct"} <= set(result)  # evaluate_model's format


def test_table4_rows_reuse_table1_classifiers_one_hgd_per_classifier():
    plan = build_plan(validate_params(load_params(REPO / "params.yaml")))
    rows = plan.combined["table4_skin4_combined"]
    paper = read_combined_csv(REPO / "paper" / "table4_skin_combined_defenses.csv")
    assert [r.label for r in rows] == list(paper.defense)
    table1 = {m.name for m in plan.tables["table1_skin4_resnet18"]}
    assert {r.model for r in rows} <= table1  # nothing trained twice
    hgd = {r.denoiser: r.model for r in rows if r.label.startswith("HGD")}
    assert len(hgd) == 4 and all(plan.denoisers[d].protects == m for d, m in hgd.items())
    assert len({r.denoiser for r in rows if r.label.startswith("R")}) == 1  # one reformer for the dataset
    smoke = build_plan(validate_params(load_params(REPO / "params.yaml", SMOKE)))
    extra = set(smoke.models) - {m.name for t in smoke.tables.values() for m in t}
    assert {m for m in extra if not smoke.models[m].surrogate} == {"skin4_resnet18_ln0_la10_s0"}  # trained for R+La
    assert not smoke.models["skin4_resnet18_ln0_la10_s0"].evaluated  # no plain evaluation nobody reads


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["combined_tables"]["table4_skin4_combined"]["rows"].append(
        {"denoiser": "reformer", "lambda_n": 0.5, "lambda_a": 0}), "has the label 'R+Ln' of rows[2]"),
    (lambda c: c["combined_tables"]["table4_skin4_combined"].update(dataset="skin5"),
     "'combined_tables.table4_skin4_combined.dataset' = 'skin5' is not a defined dataset"),
    (lambda c: c["denoisers"]["hgd"].update(depth=6), "'denoisers.hgd.depth' = 6 must be <= 5"),
    (lambda c: c["combined_tables"]["table4_skin4_combined"]["rows"][0].update(denoiser="magnet"),
     "'combined_tables.table4_skin4_combined.rows[0].denoiser' = 'magnet' is not allowed"),
])
def test_bad_combined_table_parameters_name_the_key(edit, message):
    cfg = load_params(REPO / "params.yaml")
    edit(cfg)
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params(cfg)


@pytest.mark.slow
def test_smoke_table4_has_the_papers_rows_and_columns_plus_clean(smoke_run):
    paper = read_combined_csv(REPO / "paper" / "table4_skin_combined_defenses.csv")
    ours = read_combined_csv(smoke_run / "results" / "tables" / "table4_skin4_combined.csv")
    assert list(ours.columns) == ["defense", "clean", *paper.columns[1:]]
    assert list(ours.defense) == list(paper.defense)
    values = ours.drop(columns="defense").to_numpy()
    assert ((values >= 0) & (values <= 100)).all()
    vs = read_combined_csv(smoke_run / "results" / "tables" / "table4_skin4_combined_vs_paper.csv")
    assert list(vs.columns) == ["defense", "metric", "ours", "paper", "diff"] and len(vs) == 9 * 6
    r_cw = vs[(vs.defense == "R") & (vs.metric == "cw")].iloc[0]
    assert r_cw.paper == 9.71 and r_cw["diff"] == pytest.approx(r_cw.ours - 9.71, abs=0.011)
    assert vs[vs.metric == "clean"].paper.isna().all()  # the paper reports no clean column
    # every row but NA went through its denoiser: the evaluation says which, in evaluate_model's format
    plan = build_plan(validate_params(load_params(REPO / "params.yaml", SMOKE)))
    for row in plan.combined["table4_skin4_combined"]:
        if row.denoiser is None:
            continue
        ev = json.loads((smoke_run / f"results/metrics/eval_denoised/{row.denoiser}/{row.model}.json").read_text())
        assert ev["denoiser"] == row.denoiser and ev["model"] == row.model
        assert ev["denoiser_kind"] == plan.denoisers[row.denoiser].kind
        assert set(ev["accuracy"]) == {"clean", *ATTACKS} and ev["correct"]["clean"] <= ev["n_test"]
    trained = json.loads((smoke_run / "results/metrics/train_denoisers/skin4_reformer_s0.json").read_text())
    assert [r["epoch"] for r in trained["history"]] == [1]


@pytest.mark.slow
def test_smoke_denoiser_trainings_and_evaluations_are_tracked(smoke_run):
    from mlflow.tracking import MlflowClient

    plan = build_plan(validate_params(load_params(smoke_run / "params.yaml")))
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("xue2019-denoising-cnn/default").experiment_id
    trained = {r.data.tags["model"]: r for r in client.search_runs([exp], "tags.stage = 'train_denoiser'")}
    assert set(trained) == set(plan.denoisers)
    classifiers = {r.data.tags["model"]: r.info.run_id for r in client.search_runs([exp], "tags.stage = 'train'")}
    for name, run in trained.items():
        assert run.info.status == "FINISHED" and run.data.params["kind"] == plan.denoisers[name].kind
        for key in ("loss", "test_loss"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1]  # smoke: 1 epoch
        if plan.denoisers[name].protects:
            assert run.data.tags["classifier_run_id"] == classifiers[plan.denoisers[name].protects]
    evals = client.search_runs([exp], "tags.stage = 'evaluate_denoised'")
    assert len(evals) == 8 and all(r.data.tags["denoiser_run_id"] == trained[r.data.tags["denoiser"]].info.run_id
                                   for r in evals)
