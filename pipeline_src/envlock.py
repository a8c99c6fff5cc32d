"""The locked environment: ``requirements.lock`` (``make lock`` writes it, ``make install`` installs from it).

Standard library only, so ``make lock`` can run it before any environment exists:

    python3 pipeline_src/envlock.py header requirements.lock   # put the explanation on top (make lock does)
    python3 pipeline_src/envlock.py sha256 requirements.lock   # the hash BENCHMARKS.md's machine table shows
    python3 pipeline_src/envlock.py check requirements.lock REPORT.json
        # every file a `pip install --dry-run --report REPORT.json -r <pins>` chose has its hash in the lock
        # (docs/environment.md: once against PyPI alone, once with this machine's own package sources)
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"

HEADER = """\
# The whole environment of `make install` (the pipeline and its tests), every package pinned with its hashes.
# Regenerate with `make lock` (pip-compile from pip-tools, over pyproject.toml with the extras `test` and
# `kubernetes`: the Containerfile installs this same file, so the image and a local install agree); never
# edit by hand. Install: `pip install -r requirements.lock`, then `pip install --no-deps -e .`.
# - For Linux x86_64 and CPython 3.11: torch 2.14.1 is PyPI's CUDA 13 build, whose nvidia-* and triton
#   dependencies exist for Linux only. Elsewhere install the ranges (`pip install -e ".[test]"`) or run
#   `make lock` there.
# - Hashes: each pin lists the sha256 of the files of that version (pip-compile --generate-hashes), so every
#   package has hashes and none needed a hash-less `==` pin; pip refuses any file whose hash is not listed.
#   This machine installs torch 2.14.1 / torchvision 0.29.1 from a local cache and many others from a local
#   copy of PyPI: those wheels are byte-identical to PyPI's (checked by sha256 for every pin, with the
#   command in docs/environment.md), so the same lock installs from PyPI anywhere.
# - Left out: the optional extras kaggle and medmnist (download sources). setuptools is pinned too
#   (--allow-unsafe): the editable install of this project builds with it (--no-build-isolation).
"""

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path = LOCK) -> dict[str, str]:
    """``{normalized name: version}`` of every ``name==version`` line of a requirements file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        if m := _PIN.match(line):
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def requirements(names: list[str] | tuple[str, ...], path: str | Path = LOCK) -> list[str]:
    """``name==version`` for each of ``names`` as the lock pins it (the pip requirements of an MLflow model)."""
    pins = read_pins(path)
    missing = [n for n in names if normalize(n) not in pins]
    if missing:
        raise ValueError(f"{path} pins none of {missing}: run `make lock`")
    return [f"{n}=={pins[normalize(n)]}" for n in names]


def sha256(path: str | Path = LOCK) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def add_header(path: str | Path = LOCK) -> None:
    """Put ``HEADER`` above pip-compile's own comment (once)."""
    path = Path(path)
    text = path.read_text()
    if not text.startswith(HEADER):
        path.write_text(HEADER + "#\n" + text)


def read_hashes(path: str | Path = LOCK) -> dict[str, tuple[str, set[str]]]:
    """``{normalized name: (version, {sha256, ...})}`` of a lock written with ``--generate-hashes``."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", Path(path).read_text()):
        if m := _PIN.match(block):
            out[normalize(m.group(1))] = (m.group(2), set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block)))
    return out


def check_report(lock: str | Path, report: str | Path) -> list[str]:
    """Problems (none: an empty list) between the lock and a pip installation report (``--report``): a package
    the lock lacks, another version, or a chosen file whose sha256 the lock does not list."""
    locked = read_hashes(lock)
    problems = []
    for item in json.loads(Path(report).read_text())["install"]:
        name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
        url = item["download_info"]["url"]
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if name not in locked:
            problems.append(f"{name}: not in {lock}")
        elif locked[name][0] != version:
            problems.append(f"{name}: {version} chosen, {locked[name][0]} locked")
        elif digest not in locked[name][1]:
            problems.append(f"{name}: {url.rsplit('/', 1)[-1]} has sha256 {digest}, which the lock does not list")
    return problems


def main(argv: list[str]) -> int:
    if not argv or (argv[0], len(argv)) not in (("header", 2), ("sha256", 2), ("check", 3)):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "header":
        add_header(argv[1])
    elif argv[0] == "sha256":
        print(sha256(argv[1]))
    else:
        problems = check_report(argv[1], argv[2])
        n = len(json.loads(Path(argv[2]).read_text())["install"])
        print("\n".join(problems) or f"all {n} files chosen have their sha256 in {argv[1]}")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
