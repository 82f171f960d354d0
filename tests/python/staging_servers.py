"""Real file servers on loopback (or a test network's bridge) for the staging tests: HTTP, HTTPS (a self-signed certificate made
for the test) and FTP (pyftpdlib). Each runs on threads of the test process, is started by a
fixture and stopped (its threads joined) afterwards.

Who calls it: test fixtures, from the test's main thread.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """An HTTP(S) server of in-memory files: `files[path] = bytes`, with an ETag, HEAD and byte
    ranges (`Range: bytes=N-`). `gets[path]` counts the GET requests for each path (what the tests
    count transfers with), `ranges[path]` lists the first byte each GET asked for, `most_at_once`
    is the most drip GETs (below) it was sending at the same time.
    `fail_next[path] = n` answers the next n GETs with 500; `cut_next[path] = n` sends the next
    GET only n bytes of the body, then closes; paths in `no_ranges` ignore Range (the whole body,
    200); `drip[path] = n` sends the body in n pieces, 50 ms
    apart (a slow transfer); `hang` paths never answer (until the server stops)."""

    def __init__(self, tls_context: ssl.SSLContext | None = None, address: str = "127.0.0.1"):
        self.files: dict = {}
        self.gets = collections.Counter()
        self.ranges = collections.defaultdict(list)
        self.fail_next = collections.Counter()
        self.cut_next: dict = {}
        self.drip: dict = {}
        self.no_ranges: set = set()
        self.hang: set = set()
        self.most_at_once = 0
        self._at_once = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: pytest shows failures, not every request
                pass

            def _headers(self, data: bytes, start: int = 0) -> None:
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest()[:16])
                self.end_headers()

            def do_HEAD(self):
                path = self.path.split("?")[0]
                if path in server.hang:
                    server._stopping.wait()
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                self._headers(data)

            def _sending(self, change: int) -> None:
                with server._lock:
                    server._at_once += change
                    server.most_at_once = max(server.most_at_once, server._at_once)

            def do_GET(self):
                path = self.path.split("?")[0]
                server.gets[path] += 1
                if path in server.hang:
                    server._stopping.wait()
                    return
                if server.fail_next[path] > 0:
                    server.fail_next[path] -= 1
                    self.send_error(500, "failing on purpose")
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(match.group(1)) if match else 0
                server.ranges[path].append(start)
                if path in server.no_ranges:
                    start = 0
                self._headers(data, start)
                pieces = server.drip.get(path)
                if pieces:
                    # Counted as sending until its last piece goes out: the client cannot have the
                    # whole body (and start another GET) before that.
                    self._sending(+1)
                    step = -(-(len(data) - start) // pieces)
                    for i in range(start, len(data), step):
                        if i > start:
                            server._stopping.wait(0.05)
                        if i + step >= len(data):
                            self._sending(-1)
                        self.wfile.write(data[i:i + step])
                        self.wfile.flush()
                    return
                cut = server.cut_next.pop(path, None)
                if cut is not None:
                    self.wfile.write(data[start:cut])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = False  # server_close() joins the request threads
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls_context is not None else "http"
        self.address, self.port = address, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-file-server")
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.address}:{self.port}{path}"

    def add(self, path: str, data: bytes) -> str:
        """Serves data at path; returns its URL."""
        self.files[path] = data
        return self.url(path)

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


def self_signed_certificate(directory: str) -> tuple:
    """(certificate file, key file) for 127.0.0.1 and localhost, made with openssl."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class FtpServer:
    """pyftpdlib serving `root` read-only to anonymous users on loopback; `retrs` counts RETR
    commands per file name."""

    def __init__(self, root: str):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(root)
        self.retrs = collections.Counter()
        server = self

        class Handler(FTPHandler):
            def on_file_sent(self, file):
                server.retrs[os.path.basename(file)] += 1

        Handler.authorizer = authorizer
        Handler.passive_ports = None
        self.ftpd = ThreadedFTPServer(("127.0.0.1", 0), Handler)
        self.port = self.ftpd.address[1]
        self._thread = threading.Thread(target=self.ftpd.serve_forever, kwargs={"timeout": 0.05},
                                        name="test-ftp-server")
        self._thread.start()

    def url(self, name: str) -> str:
        return f"ftp://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.ftpd.close_all()
        self._thread.join()
