"""The source files a job runs, derived from the imports of its stage's entry module.

A job's code inputs are the transitive closure of the project modules its entry module imports (at
module level or inside functions: a lazy import is still code the job runs), each package's
``__init__.py`` included. A module that never changes what a job writes (MLflow tracking) says so with a
top-level ``AFFECTS_OUTPUTS = False`` and is left out, with what only it imports. Snakemake lists them as the job's inputs and dvc.yaml as its deps, so editing
one module re-runs exactly the jobs that import it, and a new import is picked up without a list to edit.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

from pipeline_src.io import write_text

PACKAGE = "pipeline_src"
PACKAGE_DIR = Path(__file__).resolve().parent
# What each source file imports, keyed by a hash of its text, kept between processes: parsing and walking
# ~70 modules was 0.7 s of every `snakemake` start. Under Snakemake's own (git-ignored) metadata folder.
SCAN_CACHE = Path(".snakemake") / "codedeps-scan.json"
SCAN_CACHE_ENTRIES = 2000  # old versions beyond this are dropped (a few KB each at most)


def module_file(module: str, root: Path = PACKAGE_DIR.parent) -> Path | None:
    """``pipeline_src.a.b`` -> its .py file (or package ``__init__.py``) under ``root``; None if not ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolve_relative(current: str, is_package: bool, level: int, name: str | None) -> str:
    parts = current.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join(parts + ([name] if name else []))


def affects_outputs(tree: ast.Module) -> bool:
    """False when the module declares ``AFFECTS_OUTPUTS = False`` at its top level."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "AFFECTS_OUTPUTS"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Constant) and node.value.value is False):
            return False
    return True


def _scan_tree(module: str, tree: ast.Module, is_package: bool) -> dict:
    """Every module name ``module``'s source imports (ours or not), and whether it affects outputs."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            found.add(base)
            # `from pipeline_src.data import folder` imports the submodule pipeline_src.data.folder
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {"imports": sorted(found), "affects_outputs": affects_outputs(tree)}


class _ScanCache:
    """``module``'s scan by the sha256 of its text: the same text gives the same scan in any process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self.dirty = False
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self.entries = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or unreadable: scan again and write a fresh one

    def scan(self, module: str, path: Path) -> dict:
        data = path.read_bytes()
        key = f"{module}:{hashlib.sha256(data).hexdigest()}"
        hit = self.entries.get(key)
        if not (isinstance(hit, dict) and isinstance(hit.get("imports"), list)
                and isinstance(hit.get("affects_outputs"), bool)):  # absent, or an entry edited by hand
            tree = ast.parse(data.decode(), filename=str(path))
            hit = _scan_tree(module, tree, path.name == "__init__.py")
            self.entries[key] = hit
            self.dirty = True
        return hit

    def save(self) -> None:
        """Write the cache atomically (io.write_text: temp file, rename), or not at all."""
        if not self.dirty:
            return
        keep = dict(list(self.entries.items())[-SCAN_CACHE_ENTRIES:])  # insertion order: the newest last
        try:
            write_text(self.path, json.dumps(keep))
            self.dirty = False
        except OSError:  # a read-only tree or a full disk: the next start scans again
            pass


@functools.cache
def _scan_cache(root: Path) -> _ScanCache:
    return _ScanCache(root / SCAN_CACHE)


def _scan(module: str, path: Path, root: Path) -> dict:
    stat = path.stat()
    return _scanned(module, path, stat.st_mtime_ns, stat.st_size, root)


@functools.cache
def _scanned(module: str, path: Path, mtime_ns: int, size: int, root: Path) -> dict:
    return _scan_cache(root).scan(module, path)


def imported_modules(module: str, root: Path = PACKAGE_DIR.parent) -> set[str]:
    """Project modules imported anywhere in ``module``'s source (one level, not transitive)."""
    path = module_file(module, root)
    if path is None:
        return set()
    return {m for m in _scan(module, path, root)["imports"] if module_file(m, root) is not None}


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def closure(module: str, root: Path = PACKAGE_DIR.parent) -> tuple[str, ...]:
    """Every project module that running ``module`` may import, itself and package inits included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for m in _with_parents(current):
            path = module_file(m, root)
            if m in seen or path is None or not _scan(m, path, root)["affects_outputs"]:
                continue
            seen.add(m)
            todo.extend(imported_modules(m, root))
    _scan_cache(root).save()
    return tuple(sorted(seen))


def code_files(module: str, root: Path = PACKAGE_DIR.parent) -> list[str]:
    """The source files of ``closure(module)``, relative to ``root`` (the repository), sorted."""
    files = {module_file(m, root).relative_to(root).as_posix() for m in closure(module, root)}
    return sorted(files)
