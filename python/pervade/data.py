"""Files and the futures that stand for them (Parsl's File and DataFuture)."""

from __future__ import annotations

import os
from concurrent.futures import Future
from urllib.parse import urlparse

from .errors import ConfigurationError
from .parsl_imports import shown_module


class File:
    """A file named by a path or URL; passed in `inputs=` / `outputs=` to chain apps through files.

    >>> f = File("data/out.txt")
    >>> f.filepath, f.filename, f.scheme
    ('data/out.txt', 'out.txt', 'file')

    A URL (http, https, ftp, zip, rsync through RSyncStaging, ...) is staged to a local path
    by the executor's staging providers before the app runs (docs/staging.md). `checksum`
    ("sha256:<hex>", pervade only) makes the transfer verify what it received.
    """

    def __init__(self, url, checksum: str | None = None):
        if not isinstance(url, (str, os.PathLike)):
            raise TypeError(f"File() takes a str or os.PathLike, got {type(url).__name__}")
        self.url = str(url) if isinstance(url, str) else os.fspath(url)
        if not self.url:
            raise ConfigurationError("File() needs a non-empty path or URL, got ''")
        parsed = urlparse(self.url)
        self.scheme = parsed.scheme or "file"
        self.netloc = parsed.netloc
        self.path = parsed.path
        self.filename = os.path.basename(self.path)
        self.local_path = None
        self.checksum = check_checksum(checksum)

    @property
    def filepath(self) -> str:
        if self.local_path is not None:
            return self.local_path
        if self.scheme == "file":
            return self.path
        raise ValueError(f"No local_path set for {self!r}")

    def cleancopy(self) -> "File":
        return File(self.url, self.checksum)

    def __str__(self) -> str:
        return self.filepath

    def __fspath__(self) -> str:
        return self.filepath

    def __repr__(self) -> str:
        extra = f" local_path={self.local_path}" if self.local_path is not None else ""
        return (f"<{type(self).__name__} at 0x{id(self):x} url={self.url} scheme={self.scheme} "
                f"netloc={self.netloc} path={self.path} filename={self.filename}{extra}>")


def check_checksum(checksum):
    """checksum as File() takes it: None or "sha256:" and 64 hex digits (returned in lower case)."""
    if checksum is None:
        return None
    algorithm, _, digest = str(checksum).partition(":")
    if algorithm.lower() != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise ValueError(f'File checksum must be "sha256:" and 64 hex digits, got {checksum!r}')
    return "sha256:" + digest.lower()


class DataFuture(Future):
    """A future for a File produced by an app: done (with the File) when its app succeeds."""

    def __init__(self, fut: Future, file_obj: File, tid=None):
        super().__init__()
        if not isinstance(file_obj, File):
            raise TypeError(f"DataFuture needs a File, got {type(file_obj).__name__}")
        self._tid = tid
        self.file_obj = file_obj
        self.parent = fut
        fut.add_done_callback(self._parent_done)

    def _parent_done(self, parent: Future) -> None:
        if parent.cancelled():
            if Future.cancel(self):  # pending -> cancelled, callbacks run
                self.set_running_or_notify_cancel()  # concurrent.futures.wait / as_completed told
            return
        exc = parent.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(self.file_obj)

    @property
    def tid(self):
        return self._tid

    @property
    def filepath(self) -> str:
        return self.file_obj.filepath

    @property
    def filename(self) -> str:
        return self.filepath

    def cancel(self) -> bool:
        """Cancels the app that produces the file (see AppFuture.cancel); this future then ends
        cancelled too. False if that app had already finished."""
        return self.parent.cancel()

    def __repr__(self) -> str:
        done = "done" if self.done() else "not done"
        cls = type(self)
        # Named by its public module, as Parsl's repr names parsl.app.futures.DataFuture.
        module = shown_module("pervade.app.futures" if cls is DataFuture else cls.__module__)
        return f"<{module}.{cls.__qualname__} object at {hex(id(self))} representing {self.file_obj!r} {done}>"
