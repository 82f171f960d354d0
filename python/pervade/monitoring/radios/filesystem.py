"""Parsl's parsl.monitoring.radios.filesystem: monitoring messages as files in a shared directory.

>>> radio = FilesystemRadio()
>>> receiver = radio.create_receiver(run_dir="runinfo/000", resource_msgs=queue)
>>> radio.create_sender().send((MessageType.RESOURCE_INFO, {...}))  # any host that sees run_dir
>>> receiver.shutdown()

As in a maildir, a sender writes each message (pickled) under `<run_dir>/monitor-fs-radio/tmp/`
and then renames it into `new/`, so the receiver, which reads only `new/`, never sees a file half
written; it deletes each file it delivered. More load on a shared filesystem than UDP, but no
message is lost.
"""

from __future__ import annotations

import os
import pickle
import time
import uuid
from multiprocessing.queues import Queue

from .base import MonitoringRadioReceiver, MonitoringRadioSender, RadioConfig
from .filesystem_router import FilesystemRadioReceiver, message_dirs, start_filesystem_receiver


class FilesystemRadio(RadioConfig):
    """Monitoring messages as files under the run directory of `create_receiver` (which senders
    must see: a shared filesystem for other hosts)."""

    def create_receiver(self, *, run_dir: str, resource_msgs: Queue) -> MonitoringRadioReceiver:
        self.run_dir = run_dir
        return start_filesystem_receiver(resource_msgs=resource_msgs, run_dir=run_dir)

    def create_sender(self) -> MonitoringRadioSender:
        if getattr(self, "run_dir", None) is None:
            raise RuntimeError("FilesystemRadio.create_sender() needs create_receiver() first (it sets run_dir)")
        return FilesystemRadioSender(run_dir=self.run_dir)


class FilesystemRadioSender(MonitoringRadioSender):
    """Writes each message as a file (see the module's doc). Any thread."""

    def __init__(self, *, run_dir: str) -> None:
        self.tmp_path, self.new_path = message_dirs(run_dir)
        os.makedirs(self.tmp_path, exist_ok=True)
        os.makedirs(self.new_path, exist_ok=True)

    def send(self, message: object) -> None:
        # Maildir-like names: unique across hosts and processes, and in time order when sorted
        # (the receiver delivers in that order).
        name = f"{time.time_ns()}.{os.getpid()}.{uuid.uuid4().hex}"
        tmp_file = os.path.join(self.tmp_path, name)
        with open(tmp_file, "wb") as f:
            pickle.dump(message, f)
        os.rename(tmp_file, os.path.join(self.new_path, name))


__all__ = ["FilesystemRadio", "FilesystemRadioSender", "FilesystemRadioReceiver"]
