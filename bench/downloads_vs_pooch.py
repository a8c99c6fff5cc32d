"""Our download (``pipeline_src.data.download``) against pooch on an interrupted transfer: bytes the server sent.

    pip install pooch   # not a dependency of the project; this comparison only
    python bench/downloads_vs_pooch.py [--mb 32] [--cut 0.5 0.9]

A local HTTP server on 127.0.0.1 (tests/download_fixtures.py) serves a random file and closes the first
response after the given fraction of it; the second response is whole. Ours retries once, resuming with an
HTTP Range request; pooch (``Pooch.fetch`` with ``retry_if_failed=1``, its only retry) starts again from
byte 0. Both verify the same sha256 and end with the same file. Reported: bytes sent per byte of the file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from download_fixtures import serve  # noqa: E402
from pipeline_src.data import download as ours  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=32.0, help="file size in MB (default 32)")
    ap.add_argument("--cut", type=float, nargs="+", default=[0.5, 0.9], help="fractions at which to cut")
    args = ap.parse_args(argv)
    try:
        import pooch
    except ImportError:
        print("pooch is not installed: pip install pooch (only this comparison needs it)", file=sys.stderr)
        return 2
    ours.BACKOFF_S = 0.0  # no waiting between attempts in either (pooch waits 1 s: patched below)
    import pooch.core

    pooch.core.time.sleep = lambda s: None
    payload = os.urandom(int(args.mb * 1e6))
    digest = hashlib.sha256(payload).hexdigest()
    print(f"pooch {pooch.__version__}; file {len(payload) / 1e6:.0f} MB")
    print("| cut after | ours: bytes sent / file | pooch: bytes sent / file | same file |")
    print("|---|---|---|---|")
    for cut in args.cut:
        sent = {}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            with serve({"/f.bin": payload}, cut_after=int(cut * len(payload)), cut_times=1) as (url, h):
                a = ours.download(f"{url}/f.bin", tmp / "ours" / "f.bin", f"sha256:{digest}", retries=1)
                sent["ours"] = h.bytes_sent
            with serve({"/f.bin": payload}, cut_after=int(cut * len(payload)), cut_times=1) as (url, h):
                p = pooch.create(path=tmp / "pooch", base_url=f"{url}/", registry={"f.bin": f"sha256:{digest}"},
                                 retry_if_failed=1)
                b = Path(p.fetch("f.bin"))
                sent["pooch"] = h.bytes_sent
            same = a.read_bytes() == b.read_bytes() == payload
        print(f"| {100 * cut:.0f}% | {sent['ours'] / len(payload):.2f} | {sent['pooch'] / len(payload):.2f} | "
              f"{'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
