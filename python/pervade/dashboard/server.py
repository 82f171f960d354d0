"""`pervade dashboard`: serves the pages of pages.py over HTTP (standard library only).

Only GET and HEAD on the routes below are answered: any other path is 404, any other method 501. The
database is opened read-only; its text is escaped on output and never executed.
"""

from __future__ import annotations

import argparse
import http.server
import logging
import re
import sys
import time
import urllib.parse

from . import pages
from .db import Monitoring, NotMonitoringDatabase

logger = logging.getLogger(__name__)

RUN_ROUTE = re.compile(r"^/run/([^/]+)/(|tasks|failures|resources|pools|dag|task/(\d{1,18}))$")


def render(db: Monitoring, path: str, query: dict) -> tuple[int, str]:
    """(HTTP status, HTML) for a request path; the aggregates are brought up to date first."""
    if db.caught_up:   # read what was appended since the last page (at most CHUNK_ROWS rows a table)
        db.refresh()
    status, page = route(db, path, query)
    if not db.caught_up:   # more than that: read the rest on a thread, show how far it got
        db.start_catching_up()
        read, total = db.progress()
        page = pages.with_note(page, f"reading the database: {read} of {total} rows so far, the numbers grow until it is done")
    return status, page


def route(db: Monitoring, path: str, query: dict) -> tuple[int, str]:
    if path == "/":
        return 200, pages.index_page(db)
    match = RUN_ROUTE.match(path)
    if not match:
        return 404, pages.error_page("Not found", f"no page at {path}")
    workflow = db.workflow(urllib.parse.unquote(match.group(1)))
    if workflow is None:
        return 404, pages.error_page("Not found", "no such workflow")
    view = match.group(2)
    if view == "":
        return 200, pages.overview_page(db, workflow)
    if view == "tasks":
        return 200, pages.gantt_page(db, workflow)
    if view == "failures":
        return 200, pages.failures_page(db, workflow)
    if view == "resources":
        try:
            threshold = int(query.get("threshold_mb", [pages.DEFAULT_THRESHOLD_MB])[0])
        except ValueError:
            return 400, pages.error_page("Bad request", "threshold_mb must be a whole number of MiB")
        return 200, pages.resources_page(db, workflow, threshold)
    if view == "pools":
        return 200, pages.pools_page(db, workflow)
    if view == "dag":
        return 200, pages.dag_page(db, workflow)
    page = pages.task_page(db, workflow, int(match.group(3)))
    return (200, page) if page is not None else (404, pages.error_page("Not found", "no such task"))


class Handler(http.server.BaseHTTPRequestHandler):
    """One request, on the thread ThreadingHTTPServer gives it; `server.db` is shared."""

    server_version = "pervade-dashboard"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path, _, query = self.path.partition("?")   # not urlsplit: "//host/x" is a path here, not a netloc
        start = time.perf_counter()
        try:
            status, text = render(self.server.db, path, urllib.parse.parse_qs(query))
        except Exception:
            logger.exception("page %s failed", path)
            status, text = 500, pages.error_page("Error", "the page failed; see the dashboard's log")
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
        self.end_headers()
        if body:
            self.wfile.write(data)
        logger.debug("%s %s -> %d in %.3f s", self.command, path, status, time.perf_counter() - start)

    def log_message(self, format, *args) -> None:  # route http.server's access log to logging
        logger.debug(format, *args)


class DashboardServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, db: Monitoring, address: tuple[str, int]):
        self.db = db
        super().__init__(address, Handler)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pervade dashboard",
                                     description="Serve a live web dashboard of a run's monitoring database.")
    parser.add_argument("path", nargs="?", default="runinfo",
                        help="a run directory holding monitoring.db, or the database file (default: runinfo)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    args = parser.parse_args(argv)
    try:
        db = Monitoring(args.path)
    except NotMonitoringDatabase as e:
        print(f"pervade dashboard: {e}", file=sys.stderr)
        return 1
    db.start_catching_up()   # a big database is read on a thread while the pages already answer
    server = DashboardServer(db, (args.listen, args.port))
    host, port = server.server_address[:2]
    if args.listen not in ("127.0.0.1", "::1", "localhost"):
        print(f"pervade dashboard: listening on {args.listen}: anyone who can reach it sees this run (there is no login)",
              file=sys.stderr)
    print(f"pervade dashboard: serving {db.path} on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        db.close()
    return 0
