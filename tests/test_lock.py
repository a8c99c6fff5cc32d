"""requirements.lock stays the whole, hash-checked environment of pyproject.toml (`make lock` regenerates it)."""
from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from pipeline_src.envlock import HEADER, LOCK, normalize, read_pins, requirements
from workflow_helpers import REPO


def _blocks() -> dict[str, str]:
    text = LOCK.read_text()
    return {normalize(m.group(1)): block for block in re.split(r"\n(?=[A-Za-z0-9])", text)
            if (m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", block))}


def test_lock_pins_the_versions_the_project_is_measured_with():
    pins = read_pins()
    assert (pins["torch"], pins["torchvision"], pins["mlflow"]) == ("2.14.1", "0.29.1", "3.17.2")
    assert "torchattacks" not in pins
    assert LOCK.read_text().startswith(HEADER)  # the explanation `make lock` puts on top


def test_every_pin_has_a_hash_so_pip_installs_in_hash_checking_mode():
    blocks = _blocks()
    assert len(blocks) > 100
    bare = [name for name, block in blocks.items() if not re.search(r"--hash=sha256:[0-9a-f]{64}", block)]
    assert bare == []
    assert not re.search(r"^-e |^--(extra-)?index-url|^--find-links|file://", LOCK.read_text(), re.M)


@pytest.mark.parametrize("group", ["dependencies", "test", "kubernetes"])
def test_lock_satisfies_every_requirement_of_pyproject(group):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] if group == "dependencies" else project["optional-dependencies"][group]
    pins = read_pins()
    for line in reqs:
        req = Requirement(line)
        assert normalize(req.name) in pins, f"{req.name} is in pyproject.toml but not in the lock: run `make lock`"
        assert req.specifier.contains(pins[normalize(req.name)], prereleases=True), \
            f"the lock's {req.name}=={pins[normalize(req.name)]} is outside pyproject.toml's {req.specifier}"


def test_requirements_for_a_model_come_from_the_lock(tmp_path):
    assert requirements(["torch", "NumPy"]) == ["torch==2.14.1", f"NumPy=={read_pins()['numpy']}"]
    with pytest.raises(ValueError, match="pins none of \\['nope'\\]: run `make lock`"):
        requirements(["nope"])


def test_a_pip_report_is_checked_against_the_lock(tmp_path):
    """envlock.check_report: how docs/environment.md compares the files pip picks with the lock's hashes."""
    import json

    from pipeline_src.envlock import check_report, read_hashes

    version, hashes = read_hashes()["torch"]
    good = next(iter(hashes))

    def report(name, ver, digest):
        return {"metadata": {"name": name, "version": ver},
                "download_info": {"url": f"https://files.example/{name}-{ver}.whl",
                                  "archive_info": {"hashes": {"sha256": digest}}}}

    path = tmp_path / "report.json"
    path.write_text(json.dumps({"install": [report("torch", version, good)]}))
    assert check_report(LOCK, path) == []
    path.write_text(json.dumps({"install": [report("Torch", version, "0" * 64), report("torch", "0.1", good),
                                            report("torchattacks", "3.5.1", good)]}))
    assert [p.split(":")[0] for p in check_report(LOCK, path)] == ["torch", "torch", "torchattacks"]
