"""Shared fixtures: an isolated torch.hub cache for every test and a loopback HTTP file server."""
from __future__ import annotations

import http.server
import socket
import threading
from urllib.parse import unquote, urlparse

import pytest
import torch
import torch.hub


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.root``; honours ``Range: bytes=N-``; logs (path, Range); can cut or ignore ranges."""

    def do_GET(self):
        srv = self.server
        name = unquote(urlparse(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        srv.log.append((name, rng))
        self.close_connection = True
        file = srv.root / name
        if not file.is_file():
            self.send_error(404)
            return
        data, start, status = file.read_bytes(), 0, 200
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        if name in srv.cut:  # send only the first n bytes of the body, once, then hang up
            body = body[:srv.cut.pop(name)]
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A loopback server of ``http_server.root`` (only 127.0.0.1); ``.log`` lists (path, Range) per request."""
    root = tmp_path / "served"
    root.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.root, srv.log, srv.cut, srv.ignore_range = root, [], {}, False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ZOO_MIRROR", raising=False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: intra-op threads only add OpenMP spin-waits on a busy 2-core machine (5 s became 25 s).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
