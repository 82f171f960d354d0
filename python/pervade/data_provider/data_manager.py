"""Parsl's parsl.data_provider.data_manager: which staging provider handles each File of a call,
and the call as it is submitted after staging (stage-in tasks, wrapped functions, the outputs'
DataFutures).

Who calls it: the DataFlowKernel, on the thread that submits an app call, only for calls with
Files or DataFutures (has_files).
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import Future
from typing import Any, Callable, List, Optional

from ..data import DataFuture, File
from ..futures import set_data_futures
from .file_noop import NoOpFileStaging
from .ftp import FTPSeparateTaskStaging
from .http import HTTPSeparateTaskStaging
from .staging import Staging
from .zip import ZipFileStaging

logger = logging.getLogger(__name__)

# Shared by every executor whose storage_access is None: no per-executor state in these.
default_staging: List[Staging] = [NoOpFileStaging(), FTPSeparateTaskStaging(), HTTPSeparateTaskStaging(),
                                  ZipFileStaging()]

_INTERNAL = "_parsl_internal"
_STAGED = (File, DataFuture)


def has_files(args, kwargs) -> bool:
    """True if a call has something to stage: a File or DataFuture as an argument or in inputs=,
    or outputs (the one check every app call pays)."""
    for a in args:
        if isinstance(a, _STAGED):
            return True
    if kwargs:
        for v in kwargs.values():
            if isinstance(v, _STAGED):
                return True
        if kwargs.get("outputs") or any(isinstance(v, _STAGED) for v in kwargs.get("inputs") or ()):
            return True
    return False


class DataManager:
    """Asks each executor's staging providers (storage_access, else default_staging) to stage the
    Files of the calls submitted to it."""

    def __init__(self, dfk) -> None:
        self.dfk = dfk

    def working_dir(self, executor: str) -> Optional[str]:
        return getattr(self.dfk.executors.get(executor), "working_dir", None)

    def _providers(self, executor: str) -> List[Staging]:
        storage_access = getattr(self.dfk.executors.get(executor), "storage_access", None)
        return default_staging if storage_access is None else storage_access

    def staging_app(self, func: Callable, executor: str):
        """An app of this kernel running `func` on `executor`: for the providers' staging tasks."""
        from ..app.app import python_app

        return python_app(func, executors=[executor], data_flow_kernel=self.dfk)

    def _provider(self, file: File, executor: str, stage_in: bool) -> Staging:
        for provider in self._providers(executor):
            if provider.can_stage_in(file) if stage_in else provider.can_stage_out(file):
                return provider
        raise ValueError(f"Executor {executor} cannot stage{'' if stage_in else ' out'} file {file!r}")

    # Parsl's DataManager methods, for providers and code written against them.
    def stage_in(self, file: File, input: Any, executor: str) -> Any:
        parent_fut = input if isinstance(input, DataFuture) else None
        return self._provider(file, executor, True).stage_in(self, executor, file, parent_fut=parent_fut) or input

    def replace_task(self, file: File, func: Callable, executor: str) -> Callable:
        return self._provider(file, executor, True).replace_task(self, executor, file, func) or func

    def stage_out(self, file: File, executor: str, app_fu: Future) -> Optional[Future]:
        return self._provider(file, executor, False).stage_out(self, executor, file, app_fu)

    def replace_task_stage_out(self, file: File, func: Callable, executor: str) -> Callable:
        return self._provider(file, executor, False).replace_task_stage_out(self, executor, file, func) or func

    def optionally_stage_in(self, input, func, executor):
        """(replacement for input, func): a File or DataFuture is staged as a fresh copy (what the
        provider changes is not seen by the caller's File); anything else is left alone."""
        if isinstance(input, DataFuture):
            file = input.file_obj.cleancopy()
            # Completes with the copy when the original does; on the original's task directly
            # when that is an app of this kernel (one engine dependency, no external one).
            parent = input.parent if _is_app_of(input.parent, self.dfk) else input
            input = DataFuture(parent, file, tid=input.tid)
        elif isinstance(input, File):
            file = input = input.cleancopy()
        else:
            return input, func
        return self.stage_in(file, input, executor), self.replace_task(file, func, executor)

    def stage_call(self, app_fut, func, args, kwargs, labels, reserved_id):
        """The call as it is submitted after staging: (func, args, kwargs, labels, reserved_id).
        Picks the executor when several may run it (as Parsl: at random), since staging depends on
        it; sets app_fut's outputs (and stdout/stderr when they are Files) to DataFutures."""
        kwargs = dict(kwargs) if kwargs else {}
        outputs = list(kwargs.get("outputs") or ())
        if kwargs.get("_parsl_staging_inhibit"):
            if outputs:
                if reserved_id < 0:
                    reserved_id = self.dfk.reserve_task_id()
                set_data_futures(app_fut, outputs=[DataFuture(app_fut, f, tid=reserved_id) for f in outputs])
            return func, args, kwargs, labels, reserved_id
        if labels is None:
            labels = [label for label in self.dfk.executors]
        executor = labels[0] if len(labels) == 1 else random.choice(labels)

        if "inputs" in kwargs:
            inputs = list(kwargs["inputs"])
            for i, f in enumerate(inputs):
                inputs[i], func = self.optionally_stage_in(f, func, executor)
            kwargs["inputs"] = inputs
        for key, f in kwargs.items():
            if key not in ("stdout", "stderr", "inputs"):
                kwargs[key], func = self.optionally_stage_in(f, func, executor)
        args = list(args)
        for i, f in enumerate(args):
            args[i], func = self.optionally_stage_in(f, func, executor)

        streams = [key for key in ("stdout", "stderr") if isinstance(kwargs.get(key), File)]
        if outputs or streams:
            if reserved_id < 0:
                reserved_id = self.dfk.reserve_task_id()
            data_futures = {}
            if outputs:
                data_futures["outputs"] = []
                for i, file in enumerate(outputs):
                    func, outputs[i], df = self._stage_out_one(file, func, executor, app_fut, reserved_id)
                    data_futures["outputs"].append(df)
                kwargs["outputs"] = outputs
            for key in streams:
                func, kwargs[key], data_futures[key] = self._stage_out_one(kwargs[key], func, executor, app_fut,
                                                                           reserved_id)
            set_data_futures(app_fut, **data_futures)
        return func, tuple(args), kwargs, [executor], reserved_id

    def _stage_out_one(self, file: File, func, executor, app_fut, tid):
        """(func, the copy the task gets, the output's DataFuture) for one file staged out. The
        DataFuture holds the caller's File; providers change only the copy."""
        copy = file.cleancopy()
        stage_out_fut = self.stage_out(copy, executor, app_fut)
        df = DataFuture(stage_out_fut if stage_out_fut is not None else app_fut, file, tid=tid)
        return self.replace_task_stage_out(copy, func, executor), copy, df


def _is_app_of(future, dfk) -> bool:
    from ..futures import AppFuture

    return isinstance(future, AppFuture) and future._dfk is dfk


__all__ = ["DataManager", "default_staging"]
