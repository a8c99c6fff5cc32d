"""Downloads and extraction, against a local HTTP server: verified, resumable, never escaping the target."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from download_fixtures import serve, sha256, zip_bytes, zip_member
from pipeline_src.data import download as download_module
from pipeline_src.data.archive import UnsafeArchiveError, safe_extract
from pipeline_src.data.download import DownloadError, download

PAYLOAD = zip_bytes({"top/a.txt": b"alpha" * 1000, "top/sub/b.txt": b"beta"})


def test_good_archive_is_downloaded_verified_and_extracted(tmp_path):
    with serve({"/good.zip": PAYLOAD}) as (url, handler):
        path = download(f"{url}/good.zip", tmp_path / "dl" / "good.zip", sha256(PAYLOAD))
        again = download(f"{url}/good.zip", tmp_path / "dl" / "good.zip", sha256(PAYLOAD))
    assert path.read_bytes() == PAYLOAD and again == path
    assert len(handler.requests) == 1  # the verified copy is reused, not fetched twice
    out = safe_extract(path, tmp_path / "out")
    assert (out / "top" / "sub" / "b.txt").read_bytes() == b"beta"
    assert not list(tmp_path.glob("**/*.part"))


def test_checksum_mismatch_is_rejected_and_leaves_no_file(tmp_path):
    wrong = "sha256:" + "0" * 64
    with serve({"/good.zip": PAYLOAD}) as (url, _):
        with pytest.raises(DownloadError, match=r"checksum mismatch for good\.zip: expected sha256:0{64}, got sha256:"):
            download(f"{url}/good.zip", tmp_path / "good.zip", wrong)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_interrupted_download_resumes_with_range(tmp_path):
    dest = tmp_path / "good.zip"
    with serve({"/good.zip": PAYLOAD}, cut_after=len(PAYLOAD) // 3) as (url, _):
        with pytest.raises(DownloadError, match="interrupted"):
            download(f"{url}/good.zip", dest, sha256(PAYLOAD))
    part = tmp_path / "good.zip.part"
    have = part.stat().st_size
    assert 0 < have < len(PAYLOAD) and not dest.exists()
    with serve({"/good.zip": PAYLOAD}) as (url, handler):
        download(f"{url}/good.zip", dest, sha256(PAYLOAD))
    assert handler.requests == [{"path": "/good.zip", "range": f"bytes={have}-"}]  # only the rest was asked for
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_retries_resume_where_the_cut_left_off(tmp_path, monkeypatch):
    """What pooch does not do (bench/downloads_vs_pooch.py): the retry asks only for the missing bytes."""
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.0)
    dest = tmp_path / "good.zip"
    with serve({"/good.zip": PAYLOAD}, cut_after=len(PAYLOAD) // 3, cut_times=2) as (url, handler):
        download(f"{url}/good.zip", dest, sha256(PAYLOAD), retries=2)
    third = len(PAYLOAD) // 3
    assert [r["range"] for r in handler.requests] == [None, f"bytes={third}-", f"bytes={2 * third}-"]
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "good.zip.part").exists()


def test_client_errors_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.0)
    with serve({}) as (url, handler):
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"{url}/missing.zip", tmp_path / "m.zip", None, retries=3)
    assert len(handler.requests) == 1


def test_unpinned_checksum_is_recorded_then_enforced(tmp_path):
    dest = tmp_path / "x.zip"
    with serve({"/x.zip": PAYLOAD}) as (url, _):
        download(f"{url}/x.zip", dest, None)
    assert "sha256:" + (tmp_path / "x.zip.sha256").read_text().strip() == sha256(PAYLOAD)
    dest.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="does not match"):
        download("http://127.0.0.1:9/never-called", dest, None)


def test_http_error_names_the_url(tmp_path):
    with serve({}) as (url, _):
        with pytest.raises(DownloadError, match=r"missing\.zip: HTTP 404"):
            download(f"{url}/missing.zip", tmp_path / "m.zip", None)


def _zip_with_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zip_member("ok.txt"), b"fine")
        info = zip_member(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buf.getvalue()


def _tar_with(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"fine"
        ok = tarfile.TarInfo("ok.txt")
        ok.size = len(data)
        tf.addfile(ok, io.BytesIO(data))
        if kind == "dotdot":
            evil = tarfile.TarInfo("../evil.txt")
            evil.size = len(data)
            tf.addfile(evil, io.BytesIO(data))
        else:
            link = tarfile.TarInfo("link")
            link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            link.linkname = "../../etc/passwd"
            tf.addfile(link)
    return buf.getvalue()


UNSAFE = [
    ("dotdot.zip", zip_bytes({"ok.txt": b"x", "../evil.txt": b"x"}), r"'\.\./evil\.txt' contains '\.\.'"),
    ("nested.zip", zip_bytes({"a/../../evil.txt": b"x"}), "contains '..'"),
    ("abs.zip", zip_bytes({"/tmp/evil.txt": b"x"}), "absolute path"),
    ("link.zip", _zip_with_symlink("link", "../../outside"), "leaves the target folder"),
    ("abslink.zip", _zip_with_symlink("link", "/etc/passwd"), "absolute path"),
    ("dotdot.tar", _tar_with("dotdot"), "contains '..'"),
    ("symlink.tar", _tar_with("symlink"), "leaves the target folder"),
    ("hardlink.tar", _tar_with("hardlink"), "leaves the target folder"),
]


def test_test_archives_are_the_same_bytes_whenever_they_are_built(monkeypatch):
    """pytest-xdist stops the run when its workers collect different tests; archives built at collection
    must not carry the clock (a zip member's default date is the current time, in 2-second steps)."""
    first = (zip_bytes({"a.txt": b"x"}), _zip_with_symlink("link", "x"))
    monkeypatch.setattr("time.time", lambda: 1_900_000_000.0)
    assert (zip_bytes({"a.txt": b"x"}), _zip_with_symlink("link", "x")) == first


@pytest.mark.parametrize("name,data,message", UNSAFE, ids=[name for name, _, _ in UNSAFE])  # not the bytes
def test_unsafe_archives_are_refused_before_writing_anything(tmp_path, name, data, message):
    archive = tmp_path / "in" / name
    archive.parent.mkdir()
    archive.write_bytes(data)
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, tmp_path / "box" / "out")
    assert not (tmp_path / "box").exists() or list((tmp_path / "box").iterdir()) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["in", name])


def test_links_inside_the_target_are_kept(tmp_path):
    archive = tmp_path / "inside.zip"
    archive.write_bytes(_zip_with_symlink("sub/link", "../ok.txt"))
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "sub" / "link").read_bytes() == b"fine"
