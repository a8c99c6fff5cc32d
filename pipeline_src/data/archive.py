"""Safe extraction of zip and tar archives: nothing may land outside the target folder.

Every member is checked before anything is written: absolute paths, drive letters, ``..`` components,
and symbolic or hard links whose target leaves the folder are refused with ``UnsafeArchiveError``
naming the member. Extraction goes to a temporary sibling folder that is renamed into place, so a
failure leaves no half-extracted tree.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)


class UnsafeArchiveError(ValueError):
    """An archive member would be written (or point) outside the extraction folder."""


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
    """A link inside the archive must resolve inside the folder (hard links: relative to the root)."""
    norm = target.replace("\\", "/")
    if norm.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} points to the absolute path {target!r}; refusing")
    base = "" if hard else posixpath.dirname(posixpath.normpath(member))
    resolved = posixpath.normpath(posixpath.join(base, norm))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} leaves the target folder; refusing")


def check_zip(zf: zipfile.ZipFile, archive: str | Path = "archive") -> None:
    for info in zf.infolist():
        check_member_path(info.filename, archive)
        if stat.S_ISLNK(info.external_attr >> 16):  # zip stores a symlink's target as its content
            check_link_target(info.filename, zf.read(info).decode("utf-8", "replace"), archive)


def check_tar(tf: tarfile.TarFile, archive: str | Path = "archive") -> None:
    for member in tf.getmembers():
        check_member_path(member.name, archive)
        if member.issym():
            check_link_target(member.name, member.linkname, archive)
        elif member.islnk():
            check_link_target(member.name, member.linkname, archive, hard=True)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or fifo; refusing to extract")


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a .zip or tar archive into ``target`` (created; must not exist yet) after checking it all."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists: remove it to extract {archive.name} again")
    tmp = target.with_name(f".{target.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                check_zip(zf, archive)
                tmp.mkdir(parents=True)
                for info in zf.infolist():  # zipfile never creates links, so symlinks become small files
                    if stat.S_ISLNK(info.external_attr >> 16):
                        dest = tmp / check_member_path(info.filename, archive)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(zf.read(info).decode(), dest)
                    else:
                        zf.extract(info, tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                check_tar(tf, archive)
                tmp.mkdir(parents=True)
                tf.extractall(tmp, filter="data")  # the stdlib's own guard, on top of the checks above
        else:
            raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s -> %s", archive.name, target)
    return target
