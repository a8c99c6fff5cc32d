"""The locked environment: ``requirements.lock`` (``make lock`` writes it, ``make install`` installs from it).

Standard library only, so ``make lock`` can run it before any environment exists:

    python3 pipeline_src/envlock.py header requirements.lock   # put the explanation on top (make lock does)
    python3 pipeline_src/envlock.py sha256 requirements.lock   # the hash BENCHMARKS.md's machine table shows
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"

HEADER = """\
# The whole environment of `make install` (the pipeline and its tests), every package pinned with its hashes.
# Regenerate with `make lock` (pip-compile from pip-tools, over pyproject.toml with the `test` extra); never
# edit by hand. Install: `pip install -r requirements.lock`, then `pip install --no-deps -e .`.
# - For Linux x86_64 and CPython 3.11: torch 2.14.1 is PyPI's CUDA 13 build, whose nvidia-* and triton
#   dependencies exist for Linux only. Elsewhere install the ranges (`pip install -e ".[test]"`) or run
#   `make lock` there.
# - Hashes: each pin lists the sha256 of the files of that version (pip-compile --generate-hashes). For all
#   218 pins, the wheel pip picks on Linux x86_64 / CPython 3.11 from PyPI has its hash listed; the 94 that
#   this machine takes from its local copy of PyPI (torch 2.14.1 and torchvision 0.29.1 among them) are
#   byte-identical to PyPI's (compared by sha256; docs/environment.md). So every package has hashes and none
#   needed a hash-less `==` pin; pip refuses any file whose hash is not listed.
# - Left out: the optional extras kaggle and medmnist (download sources), the Kubernetes executor and S3
#   storage plugins (installed where that cluster is used, docs/cluster.md). setuptools is pinned too
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


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("header", "sha256"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "header":
        add_header(argv[1])
    else:
        print(sha256(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
