"""Downloads that verify and resume: ``download(url, dest, checksum)``.

The file grows as ``<dest>.part``; an interrupted download keeps it and the next call asks the server
for the rest (HTTP Range). Only a file whose checksum matches is renamed to ``dest``; a mismatch
deletes the partial file, so nothing unverified is ever left where the pipeline would read it.
Checksums are written ``sha256:<hex>`` or ``md5:<hex>`` (MedMNIST publishes MD5 only). ``retries``: an
interrupted or failed transfer (not an HTTP 4xx) is tried again after 1, 2, 4, ... s (at most 10 s), each
time resuming from the bytes already on disk.

Why our own and not pooch (``pooch.retrieve``, which also verifies, writes to a temporary file and renames
it): pooch restarts an interrupted download from byte 0 (no HTTP Range) and deletes the partial file, so a
transfer cut at 90% costs 190% of the file (``python bench/downloads_vs_pooch.py``: bytes sent by the server
for a cut-then-retried download, ours against pooch). For ISIC 2018's 2.6 GB training archive that is the
difference that matters. Pooch has no Kaggle downloader either (``data/rsna.py`` uses the ``kaggle``
package). What pooch adds beyond this file (FTP, DOI resolution, a cache folder per project) this pipeline
does not need. docs/environment.md, "Libraries".
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)
CHUNK = 1 << 20
BACKOFF_S = 1.0  # first wait before a retry; doubled each time, at most MAX_BACKOFF_S
MAX_BACKOFF_S = 10.0
RETRIES = 3  # what the data sources pass: up to 4 attempts, about 7 s of waiting in all


class DownloadError(ValueError):  # a ValueError: the CLI reports it in one line
    """A download failed or its content is not what the pinned checksum says."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable  # a cut connection or a server error: trying again (resuming) may work


def parse_checksum(checksum: str) -> tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep or algo not in ("sha256", "md5") or not digest:
        raise DownloadError(f"checksum {checksum!r} must read 'sha256:<hex>' or 'md5:<hex>'")
    return algo, digest.lower()


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | Path, checksum: str) -> bool:
    algo, digest = parse_checksum(checksum)
    return file_digest(path, algo) == digest


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the missing bytes of ``url`` to ``part`` (restart if the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pipeline_src"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete; the checksum decides
            return
        raise DownloadError(f"downloading {url}: HTTP {exc.code} {exc.reason}",
                            retryable=exc.code >= 500 or exc.code in (408, 429)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"downloading {url}: {getattr(exc, 'reason', exc)}; check the network or set "
                            "a mirror in params (datasets.<name>.downloads)", retryable=True) from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log.info("%s: server ignored the Range request; starting again", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        try:
            with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc=part.name.removesuffix(".part"), disable=None) as bar:
                while block := response.read(CHUNK):
                    fh.write(block)
                    bar.update(len(block))
        except (OSError, urllib.error.URLError) as exc:  # IncompleteRead, reset: keep the part to resume
            raise DownloadError(f"downloading {url} was interrupted after {part.stat().st_size} bytes ({exc}); "
                                "run again to resume", retryable=True) from None
        if total is not None and part.stat().st_size < total:
            raise DownloadError(f"downloading {url} was interrupted after {part.stat().st_size} of {total} bytes; "
                                "run again to resume", retryable=True)


def _fetch_with_retries(url: str, part: Path, timeout: float, retries: int) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout)
            return
        except DownloadError as exc:
            if attempt == retries or not exc.retryable:
                raise
            wait = min(BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S)
            have = part.stat().st_size if part.exists() else 0
            log.warning("%s; retry %d of %d in %.0f s, resuming after %d bytes", exc, attempt + 1, retries, wait,
                        have)
            time.sleep(wait)


def download(url: str, dest: str | Path, checksum: str | None, *, timeout: float = 60.0, retries: int = 0) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is there; return ``dest``.

    ``checksum`` None (no pinned value known): the SHA-256 is computed, logged and stored beside the
    file as ``<dest>.sha256`` (trust on first use); later calls verify against it. ``retries``: how often
    an interrupted transfer or a server error is tried again, resuming (none by default; sources pass
    ``RETRIES``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recorded = dest.with_name(dest.name + ".sha256")
    if checksum is None and recorded.is_file():
        checksum = "sha256:" + recorded.read_text().strip()
    if dest.is_file():
        if checksum is None or verify(dest, checksum):
            log.info("%s present and verified", dest)
            return dest
        raise DownloadError(f"{dest} exists but does not match {checksum}: delete it to download it again")
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s -> %s", url, dest)
    _fetch_with_retries(url, part, timeout, retries)
    if checksum is None:
        digest = file_digest(part)
        log.warning("%s has no pinned checksum; recorded sha256:%s in %s (pin it in params: "
                    "datasets.<name>.downloads)", dest.name, digest, recorded)
        recorded.write_text(digest + "\n")
    elif not verify(part, checksum):
        algo, expected = parse_checksum(checksum)
        actual = file_digest(part, algo)
        part.unlink()
        raise DownloadError(f"{url}: checksum mismatch for {dest.name}: expected {algo}:{expected}, got "
                            f"{algo}:{actual}; the partial file was deleted. A changed or corrupted file: "
                            "retry, or pin the right checksum for a mirror in datasets.<name>.downloads")
    os.replace(part, dest)
    return dest
