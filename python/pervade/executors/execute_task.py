"""Parsl's parsl.executors.execute_task: runs a call packed by
`pervade.serialize.pack_apply_message` (for executors written in Python that ship such buffers
to processes of their own)."""

from ..serialize import unpack_apply_message


def execute_task(bufs: bytes):
    """The result of the packed call (its exception propagates)."""
    func, args, kwargs = unpack_apply_message(bufs)
    return func(*args, **kwargs)


__all__ = ["execute_task"]
