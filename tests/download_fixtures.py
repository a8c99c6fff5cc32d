"""A local HTTP server for the download tests (127.0.0.1, a thread, HTTP Range support)."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from contextlib import contextmanager


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[dict] = []
    bytes_sent: int = 0  # body bytes written, all requests together
    cut_after: int | None = None  # send only this many bytes, then close (an interrupted download)
    cut_times: int | None = None  # cut only the first this many responses (None: every one)

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        type(self).requests.append({"path": path, "range": self.headers.get("Range")})
        body = self.files.get(path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        if self.cut_after is not None and (self.cut_times is None or self.cut_times > 0):
            payload = payload[: self.cut_after]
            self.close_connection = True
            if self.cut_times is not None:
                type(self).cut_times -= 1
        type(self).bytes_sent += len(payload)
        self.wfile.write(payload)
        self.wfile.flush()


@contextmanager
def serve(files: dict[str, bytes], cut_after: int | None = None, cut_times: int | None = None):
    """Yield (base_url, handler class) serving ``files`` ({'/name': bytes}); ``cut_after`` bytes into each of
    the first ``cut_times`` responses (every response if None) the connection is closed."""
    handler = type("Handler", (_Handler,), {"files": files, "requests": [], "cut_after": cut_after,
                                            "cut_times": cut_times, "bytes_sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed: a member stamped with the clock would change the archive's bytes


def zip_member(name: str) -> zipfile.ZipInfo:
    """A zip member header with a fixed date: archives built at collection time must be the same bytes in
    every pytest-xdist worker (their test ids hold them), whichever second each worker collects in."""
    return zipfile.ZipInfo(name, date_time=ZIP_DATE)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zip_member(name), data)
    return buf.getvalue()
