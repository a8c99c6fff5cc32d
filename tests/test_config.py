"""Bad parameters fail before any work, with one message naming the key and the fix."""
import copy

import pytest

from pipeline_src.config import ParamsError, load_params, validate_params
from pipeline_src.plan import build_plan


@pytest.fixture(scope="module")
def params(repo):
    return load_params(repo / "params.yaml")


def test_default_params_and_smoke_overlay_are_valid(repo, params):
    validate_params(params)
    validate_params(load_params(repo / "params.yaml", repo / "configs" / "smoke.yaml"))


@pytest.mark.parametrize("mutate,message", [
    (lambda p: p["training"].update(epochz=3), "unknown key 'training.epochz'"),
    (lambda p: p.update(colour="red"), "unknown key 'colour'"),
    (lambda p: p["tables"]["table1_skin4_resnet18"]["rows"][1].update(lambda_n=-0.1),
     "'tables.table1_skin4_resnet18.rows[1].lambda_n' = -0.1 must be >= 0"),
    (lambda p: p["attacks"]["fgsm_eps4"].update(eps=300), "'attacks.fgsm_eps4.eps' = 300 must be <= 255"),
    (lambda p: p["tables"]["table3_skin4_vgg16"].update(arch="alexnet"),
     "'tables.table3_skin4_vgg16.arch' = 'alexnet' is not allowed; allowed values: resnet18, vgg16"),
    (lambda p: p["tables"]["table2_chest3_resnet18"].update(dataset="mnist"),
     "'tables.table2_chest3_resnet18.dataset' = 'mnist' is not a defined dataset; defined datasets: skin4, chest3"),
    (lambda p: p["training"].update(epochs="ten"), "'training.epochs' = 'ten' must be of type integer"),
    (lambda p: p["attacks"]["fgsm_eps4"].update(steps=10), "'attacks.fgsm_eps4.steps' does not apply to method fgsm"),
    (lambda p: p["datasets"]["skin4"]["caps"].update(DF=5), "'datasets.skin4.caps' names 'DF', not a kept class"),
    (lambda p: p["datasets"]["chest3"].update(source="folder", channels=1),
     "'datasets.chest3.path' is required for source folder"),
    (lambda p: p["datasets"]["chest3"].update(path="x"), "'datasets.chest3.path' applies only to source folder"),
    (lambda p: p["datasets"]["skin4"].update(split={"test_fraction": 0.2, "train": 10}),
     "'datasets.skin4.split' must give either test_fraction or both train and test counts"),
])
def test_bad_params_are_named(params, mutate, message):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(ParamsError) as err:
        validate_params(bad)
    assert message in str(err.value)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_plan_derives_models_from_tables(params):
    plan = build_plan(validate_params(params))
    assert len(plan.tables["table1_skin4_resnet18"]) == 8
    # Table 1 and Table 3 share dataset but not arch; one surrogate per dataset, and with the audit on, its
    # ensemble's two other surrogates (VGG16, MobileNetV2) per dataset
    assert len(plan.models) == 8 + 4 + 4 + 2 + 2 * 2
    assert {"skin4_surrogate_vgg16_s1000", "chest3_surrogate_mobilenetv2_s1000"} <= set(plan.models)
    assert len(plan.run_models()) == 8 + 4 + 4 + 2  # what `make run` trains: not the audit's extra members
    assert plan.surrogate("skin4").name == "skin4_surrogate_resnet18_s1000"
    assert "skin4_resnet18_ln0.1_la0_s0" in plan.models
