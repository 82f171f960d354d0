"""Parsl's parsl.monitoring.radios.filesystem_router: the filesystem radio's receiver process."""

from __future__ import annotations

import logging
import os
import pickle
from multiprocessing.queues import Queue

from .receiver_process import ProcessRadioReceiver, start_receiver_process

logger = logging.getLogger(__name__)

# How often (s) the receiver looks for new files. Parsl looks every 10 s; a listing a second of
# one small directory costs a shared filesystem little and delivers messages sooner.
POLL_PERIOD_S = 1.0


def message_dirs(run_dir: str) -> tuple[str, str]:
    """The radio's `tmp` and `new` directories under `run_dir` (Parsl's layout)."""
    base = os.path.join(run_dir, "monitor-fs-radio")
    return os.path.join(base, "tmp"), os.path.join(base, "new")


class FilesystemRadioReceiver(ProcessRadioReceiver):
    """The filesystem radio's receiver: `process`, `exit_event`, `shutdown()` (`port` is None)."""


class FilesystemRouter:
    """Runs in the receiver process: delivers the files of `new/` to `resource_msgs`."""

    def __init__(self, *, run_dir: str, resource_msgs: Queue) -> None:
        tmp_dir, self.new_dir = message_dirs(run_dir)
        os.makedirs(tmp_dir, exist_ok=True)
        os.makedirs(self.new_dir, exist_ok=True)
        self.resource_msgs = resource_msgs
        self.port = None

    def serve(self, exit_event) -> None:
        while True:
            self.deliver_new()
            if exit_event.wait(POLL_PERIOD_S):
                break
        # One whole pass after the exit was asked: every message sent before shutdown() arrives.
        self.deliver_new()

    def deliver_new(self) -> None:
        """Delivers the messages in `new/`, oldest first."""
        for name in sorted(os.listdir(self.new_dir)):
            path = os.path.join(self.new_dir, name)
            try:
                with open(path, "rb") as f:
                    message = pickle.load(f)
            except OSError:
                logger.warning("Could not read %s: trying again in the next pass", path, exc_info=True)
                continue
            except Exception:
                # A complete file (it was renamed into new/) that does not unpickle will not next time.
                logger.error("Dropped %s: not a pickled message", path, exc_info=True)
                os.remove(path)
                continue
            if not isinstance(message, tuple):
                logger.error("Dropped %s: a %s, not a (MessageType, dict) tuple", path, type(message).__name__)
            else:
                logger.debug("Message from %s: %s", name, message)
                self.resource_msgs.put(message)
            os.remove(path)


def start_filesystem_receiver(*, resource_msgs: Queue, run_dir: str) -> FilesystemRadioReceiver:
    """Starts the receiver process (log: `run_dir`/monitoring_filesystem_radio.log)."""
    return start_receiver_process(FilesystemRadioReceiver, FilesystemRouter, name="Monitoring-Filesystem-Process",
                                  log_file=os.path.join(run_dir, "monitoring_filesystem_radio.log"),
                                  log_level=logging.INFO, run_dir=run_dir, resource_msgs=resource_msgs)


__all__ = ["FilesystemRadioReceiver", "start_filesystem_receiver"]
