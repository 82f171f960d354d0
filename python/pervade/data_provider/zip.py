"""Parsl's parsl.data_provider.zip: members of zip archives as Files, `zip:/path/archive.zip/member`."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager

from ..errors import ParslError
from .staging import Staging
from .transfer import PartFile, StagingError

logger = logging.getLogger(__name__)


class ZipAuthorityError(ParslError):
    """A zip: URL with an authority (zip://host/...), which means nothing to ZipFileStaging."""

    def __init__(self, file):
        super().__init__(file)
        self.file = file

    def __str__(self) -> str:
        return (f"ZipFileStaging cannot stage Files with an authority (netloc) section ({self.file.netloc}), "
                f"for {self.file.url}")


def zip_path_split(path: str) -> tuple:
    """("/tmp/a.zip", "in/side.txt") for "/tmp/a.zip/in/side.txt": the archive ends at the first
    ".zip/"."""
    index = path.find(".zip/")
    if index < 0:
        raise ValueError(f"a zip: URL names <archive>.zip/<member>, got the path {path!r}")
    return path[:index + 4], path[index + 5:]


def _unsafe(member: str) -> bool:
    """True for a member that names no file inside the archive's tree (empty, a directory,
    absolute, or leaving it with ..)."""
    normal = os.path.normpath(member) if member else ""
    return not member or member.endswith("/") or os.path.isabs(member) or normal == ".." or normal.startswith("../")


def refuse_then_run(func, url, member, /, *args, **kwargs):
    """The body of a task with an unsafe zip member: fails it (naming the URL) before it runs."""
    raise StagingError(url, f"the member {member!r} is not a file path inside the archive")


@contextmanager
def _locked(archive: str):
    """Holds <archive>.lock (flock, as the filelock package Parsl uses): stagings of this archive
    from any process on this machine take turns."""
    os.makedirs(os.path.dirname(archive) or ".", exist_ok=True)
    with open(archive + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def zip_stage_in(archive, member, parent_fut=None, outputs=(), _parsl_staging_inhibit=True):
    """Copies the member to outputs[0] (atomically, verified against its checksum)."""
    file = outputs[0]
    with PartFile(file.url, os.fspath(file)) as part:
        try:
            with _locked(archive), zipfile.ZipFile(archive, mode="r") as z, z.open(member) as src:
                shutil.copyfileobj(src, part)
        except KeyError as e:
            raise StagingError(file.url, f"{archive} has no member {member!r}") from e
        except (OSError, zipfile.BadZipFile) as e:
            raise StagingError(file.url, f"cannot read {archive}: {e}") from e
        part.commit(file.checksum)


def zip_stage_out(archive, member, parent_fut=None, inputs=(), _parsl_staging_inhibit=True):
    """Adds inputs[0] to the archive as `member`, then removes it. The archive is rewritten beside
    itself and renamed into place: a failure leaves the old archive whole."""
    file = inputs[0]
    path = os.fspath(file)
    try:
        with _locked(archive):
            fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(archive)}.", suffix=".part",
                                        dir=os.path.dirname(archive) or ".")
            try:
                with os.fdopen(fd, "wb") as out:
                    if os.path.exists(archive):
                        with open(archive, "rb") as old:
                            shutil.copyfileobj(old, out)
                with zipfile.ZipFile(temp, mode="a", compression=zipfile.ZIP_DEFLATED) as z:
                    z.write(path, arcname=member)
                os.replace(temp, archive)
            except BaseException:
                os.unlink(temp)
                raise
    except (OSError, zipfile.BadZipFile) as e:
        raise StagingError(file.url, f"cannot add {path} to {archive}: {e}") from e
    os.remove(path)


class ZipFileStaging(Staging):
    """Members of zip archives, in and out. The member's local copy is <working_dir>/<member>
    (stage-out needs a working_dir); the archive is locked while it is read or written (by
    <archive>.lock, as Parsl), so tasks writing to one archive take turns."""

    def can_stage_in(self, file) -> bool:
        return self.is_zip_url(file)

    def can_stage_out(self, file) -> bool:
        return self.is_zip_url(file)

    def is_zip_url(self, file) -> bool:
        if file.scheme != "zip":
            return False
        if file.netloc != "":
            raise ZipAuthorityError(file)
        return True

    def stage_in(self, dm, executor, file, parent_fut):
        archive, member = zip_path_split(file.path)
        if _unsafe(member):
            return None  # replace_task fails the task
        working_dir = dm.working_dir(executor)
        if working_dir:
            file.local_path = os.path.join(working_dir, member)
        app = dm.staging_app(zip_stage_in, "_parsl_internal")
        return app(archive, member, outputs=[file], _parsl_staging_inhibit=True, parent_fut=parent_fut).outputs[0]

    def stage_out(self, dm, executor, file, app_fu):
        archive, member = zip_path_split(file.path)
        if _unsafe(member):
            return None  # replace_task_stage_out fails the task
        working_dir = dm.working_dir(executor)
        if not working_dir:
            raise RuntimeError("zip file staging requires a working_dir to be specified")
        file.local_path = os.path.join(working_dir, member)
        os.makedirs(os.path.dirname(file.local_path), exist_ok=True)
        app = dm.staging_app(zip_stage_out, "_parsl_internal")
        return app(archive, member, inputs=[file], _parsl_staging_inhibit=True, parent_fut=app_fu)

    def replace_task(self, dm, executor, file, func):
        member = zip_path_split(file.path)[1]
        if _unsafe(member):
            return functools.update_wrapper(functools.partial(refuse_then_run, func, file.url, member), func)
        return None

    replace_task_stage_out = replace_task


__all__ = ["ZipFileStaging", "ZipAuthorityError", "zip_path_split"]
