"""Parsl's parsl.dataflow.taskrecord: the type of a task record (dfk.tasks[id], fut.task_record,
what a retry_handler or a memoizer plug-in's check_memo gets). pervade's records are plain
dicts with these keys (docs/python.md, "Introspection")."""

from __future__ import annotations

import datetime
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Sequence, TypedDict

from .states import States


class TaskRecord(TypedDict, total=False):
    id: int
    func: Callable
    func_name: str
    args: Sequence[Any]
    kwargs: Dict[str, Any]
    depends: List[Future]
    dfk: Any
    executor: str
    app_fu: Future
    exec_fu: Optional[Future]
    status: States
    try_id: int
    fail_count: int
    fail_cost: float
    fail_history: List[str]
    from_memo: Optional[bool]
    hashsum: Optional[str]
    memoize: bool
    ignore_for_cache: Sequence[str]
    join: bool
    joins: Any
    time_invoked: Optional[datetime.datetime]
    time_returned: Optional[datetime.datetime]
    try_time_launched: Optional[datetime.datetime]
    try_time_returned: Optional[datetime.datetime]
    resource_specification: Dict[str, Any]


__all__ = ["TaskRecord"]
