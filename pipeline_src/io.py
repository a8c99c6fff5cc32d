"""Atomic file writes: a killed job never leaves a file that looks complete."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# torch is imported by the two functions that need it: the table, statistics and summary jobs import this
# module for write_text and write_json only, and `import torch` costs them 1.5-3 s each.


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | Path) -> None:
    # Through a file object: given a path, torch.save names the archive's root folder after the file, here
    # the random temporary name, and the same tensors would give different bytes (and DVC hashes) per run.
    import torch

    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | Path, mmap: bool = False) -> Any:
    """Checkpoints and datasets hold only tensors and plain containers: never unpickle code.

    ``mmap=True`` maps the tensors from the file instead of reading them: jobs side by side on one
    dataset share its pages, and a batch reads only its own images.
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
