"""Safe extraction of zip and tar archives: nothing may land outside the target folder.

Every member is checked before anything is written: absolute paths, drive letters, ``..`` components,
symbolic or hard links whose target (as text) leaves the folder, and the limits on member count, total
uncompressed size and compression ratio (``ArchiveLimits``) are refused with ``UnsafeArchiveError``
naming the archive and the member. Extraction goes to a temporary sibling folder that is renamed into
place, so a failure leaves no half-extracted tree.

Zip links are resolved on the real filesystem, not as text: a chain such as ``l1 -> .``, ``l2 -> l1/..``,
``l3 -> l2/..`` passes every textual check yet leads out of the folder once the filesystem follows it.
So regular files and folders are written first, while the tree holds no link at all (nothing can be
followed out of it), and links are created last; then every link in the tree is resolved with
``os.path.realpath`` and must stay inside it. A link at a path that a file or folder already takes is
refused. Links inside the folder are kept (an archive may legitimately carry them); the ISIC and RSNA
archives carry none. Tar archives use the standard library's ``filter="data"``, which resolves links the
same way, on top of the same checks and limits.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

GiB = 1 << 30
MiB = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive member would be written (or point) outside the extraction folder, or breaks a limit."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may unpack to; the defaults are far above the ISIC 2018 (10,015 JPEGs, about 2.7 GB)
    and RSNA (about 30,000 DICOMs, about 4 GB) archives and far below what a zip bomb expands to.

    ``max_ratio`` applies to members (zip) or the whole archive (tar) larger than ``ratio_floor`` bytes
    uncompressed: small text files legitimately compress 10-50x, a bomb compresses 1000x."""
    max_total_bytes: int = 64 * GiB
    max_members: int = 1_000_000
    max_ratio: float = 200.0
    ratio_floor: int = 16 * MiB


DEFAULT_LIMITS = ArchiveLimits()


def check_member_path(name: str, archive: str | Path = "archive") -> str:
    """The member's normalised relative path; raises if it is absolute or climbs out with '..'."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(norm).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' and could escape the target folder; "
                                 "refusing to extract")
    return posixpath.normpath(norm)


def check_link_target(member: str, target: str, archive: str | Path = "archive", *, hard: bool = False) -> None:
    """A link inside the archive must resolve inside the folder (hard links: relative to the root).

    A textual check only (early, clear refusals); ``check_links_resolve`` is the one that counts."""
    norm = target.replace("\\", "/")
    if norm.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} points to the absolute path {target!r}; refusing")
    base = "" if hard else posixpath.dirname(posixpath.normpath(member))
    resolved = posixpath.normpath(posixpath.join(base, norm))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} leaves the target folder; refusing")


def _check_sizes(archive: str | Path, members: list[tuple[str, int, int | None]], limits: ArchiveLimits) -> None:
    """``members``: (name, uncompressed bytes, compressed bytes or None). Refuses the first member that
    breaks a limit, before anything is written."""
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(f"{archive}: member {members[limits.max_members][0]!r} is number "
                                 f"{limits.max_members + 1}, over the limit of {limits.max_members} members; "
                                 "refusing to extract (raise ArchiveLimits.max_members if the archive is trusted)")
    total = 0
    for name, size, packed in members:
        total += size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(f"{archive}: member {name!r} takes the uncompressed total to {total} bytes, over "
                                     f"the limit of {limits.max_total_bytes}; refusing to extract (raise "
                                     "ArchiveLimits.max_total_bytes if the archive is trusted)")
        if packed is not None and size > limits.ratio_floor and size > limits.max_ratio * max(packed, 1):
            raise UnsafeArchiveError(f"{archive}: member {name!r} expands {size / max(packed, 1):.0f}x ({packed} -> "
                                     f"{size} bytes), over the limit of {limits.max_ratio:.0f}x: a zip bomb? "
                                     "refusing to extract")


def check_zip(zf: zipfile.ZipFile, archive: str | Path = "archive", limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    infos = zf.infolist()
    _check_sizes(archive, [(i.filename, i.file_size, i.compress_size) for i in infos], limits)
    seen: dict[str, str] = {}
    for info in infos:
        norm = check_member_path(info.filename, archive)
        if norm in seen and not info.is_dir():
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} repeats {seen[norm]!r}; refusing to extract")
        seen[norm] = info.filename
        if _is_zip_link(info):  # zip stores a symlink's target as its content
            if info.file_size > 4096:
                raise UnsafeArchiveError(f"{archive}: link {info.filename!r} has a {info.file_size}-byte target; "
                                         "refusing")
            check_link_target(info.filename, zf.read(info).decode("utf-8", "replace"), archive)


def check_tar(tf: tarfile.TarFile, archive: str | Path = "archive", limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    members = tf.getmembers()
    _check_sizes(archive, [(m.name, m.size if m.isfile() else 0, None) for m in members], limits)
    total, packed = sum(m.size for m in members if m.isfile()), Path(tf.name).stat().st_size if tf.name else 0
    if packed and total > limits.ratio_floor and total > limits.max_ratio * packed:
        raise UnsafeArchiveError(f"{archive}: member {members[-1].name!r} ends a {total}-byte expansion of a "
                                 f"{packed}-byte archive, over the limit of {limits.max_ratio:.0f}x: a bomb? refusing")
    for member in members:
        check_member_path(member.name, archive)
        if member.issym():
            check_link_target(member.name, member.linkname, archive)
        elif member.islnk():
            check_link_target(member.name, member.linkname, archive, hard=True)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or fifo; refusing to extract")


def _is_zip_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def check_links_resolve(root: Path, archive: str | Path = "archive") -> None:
    """Every symlink under ``root``, followed through the real filesystem (chains included), stays inside."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):  # followlinks=False: a link to a folder is listed, not entered
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), real_root):
                member = os.path.relpath(path, root).replace(os.sep, "/")
                raise UnsafeArchiveError(f"{archive}: link {member!r} -> {os.readlink(path)!r} resolves to "
                                         f"{os.path.realpath(path)}, outside the target folder (through other links "
                                         "of the archive); refusing to extract")


def _copy_limited(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: str | Path) -> None:
    """One regular member, streamed; ``open(..., 'xb')`` never follows or overwrites an existing path."""
    written = 0
    with zf.open(info) as src, open(dest, "xb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > info.file_size:  # zipfile stops at the declared size; this is a second wall
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is larger than it declares; refusing")
            out.write(chunk)


def _extract_zip(zf: zipfile.ZipFile, tmp: Path, archive: str | Path) -> None:
    infos = zf.infolist()
    real_tmp = os.path.realpath(tmp)
    # 1. folders and regular files, while the tree holds no link: every write lands where its name says
    for info in infos:
        if _is_zip_link(info):
            continue
        dest = tmp / check_member_path(info.filename, archive)
        try:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                _copy_limited(zf, info, dest, archive)
        except OSError as exc:  # a file and a folder of the same name, ...
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} cannot be written ({exc}); "
                                     "refusing to extract") from None
    # 2. links last (zipfile would write them as small files); nothing is written through them afterwards
    for info in infos:
        if not _is_zip_link(info):
            continue
        dest = tmp / check_member_path(info.filename, archive)
        if os.path.lexists(dest):
            raise UnsafeArchiveError(f"{archive}: link {info.filename!r} sits where the archive also puts a file, "
                                     "folder or link; refusing to extract")
        # the folder holding the link, resolved through the links made so far, before anything is created in it
        if not _inside(os.path.realpath(dest.parent), real_tmp):
            raise UnsafeArchiveError(f"{archive}: link {info.filename!r} would be created through a link leaving the "
                                     "target folder; refusing to extract")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(zf.read(info).decode("utf-8", "replace"), dest)
        except OSError as exc:
            raise UnsafeArchiveError(f"{archive}: link {info.filename!r} cannot be created ({exc}); "
                                     "refusing to extract") from None
    # 3. every link resolved on the real filesystem, chains included
    check_links_resolve(tmp, archive)


def safe_extract(archive: str | Path, target: str | Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Extract a .zip or tar archive into ``target`` (created; must not exist yet) after checking it all."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists: remove it to extract {archive.name} again")
    tmp = target.with_name(f".{target.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                check_zip(zf, archive, limits)
                tmp.mkdir(parents=True)
                _extract_zip(zf, tmp, archive)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                check_tar(tf, archive, limits)
                tmp.mkdir(parents=True)
                tf.extractall(tmp, filter="data")  # the stdlib's own guard, on top of the checks above
        else:
            raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s -> %s", archive.name, target)
    return target
