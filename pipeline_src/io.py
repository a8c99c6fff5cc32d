"""Atomic file writes: a killed job never leaves a file that looks complete."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


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
    except Exception as exc:  # noqa: BLE001  a writer may hide the full disk: torch's zip writer raises
        # "unexpected pos N vs M", with the OSError it swallowed as the context
        if not _out_of_space(exc):
            raise
        raise OSError(errno.ENOSPC, f"no space left to write {path}: {_free(path.parent)} free on its disk. "
                                    "Free some space (old runs under runs/, stale folders in the temporary "
                                    "directory) or write the run elsewhere, then run again; finished jobs "
                                    "are kept") from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def _out_of_space(exc: BaseException | None) -> bool:
    """True if ``exc`` or what it was raised from is a full disk or quota."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB"
    except OSError:
        return "unknown space"


def save_torch(obj: Any, path: str | Path) -> None:
    # Through a file object: given a path, torch.save names the archive's root folder after the file, here
    # the random temporary name, and the same tensors would give different bytes (and DVC hashes) per run.
    import torch  # here, not at the top: jobs that write only JSON or CSV never import torch

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
