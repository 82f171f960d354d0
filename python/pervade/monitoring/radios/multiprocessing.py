"""Parsl's parsl.monitoring.radios.multiprocessing: monitoring messages through a multiprocessing
queue, for senders in the receiving process or in processes started from it (which inherit the
queue).

>>> radio = MultiprocessingQueueRadio()
>>> receiver = radio.create_receiver(run_dir="runinfo", resource_msgs=queue)
>>> radio.create_sender().send((MessageType.TASK_INFO, {...}))   # put straight on `queue`
"""

from __future__ import annotations

from multiprocessing.queues import Queue

from ...utils import RepresentationMixin
from .base import MonitoringRadioReceiver, MonitoringRadioSender, RadioConfig


class MultiprocessingQueueRadioSender(MonitoringRadioSender, RepresentationMixin):
    """Puts each message on `queue`."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def send(self, message: object) -> None:
        self.queue.put(message)


class MultiprocessingQueueRadio(RadioConfig):
    """Senders put messages on the receiver's queue itself: no process, no socket. The config
    holds the queue, so it works only where that queue can go (this process, and multiprocessing
    children it starts)."""

    def create_receiver(self, *, run_dir: str, resource_msgs: Queue) -> MonitoringRadioReceiver:
        self._queue = resource_msgs
        return MultiprocessingQueueRadioReceiver()

    def create_sender(self) -> MonitoringRadioSender:
        if getattr(self, "_queue", None) is None:
            raise RuntimeError("MultiprocessingQueueRadio.create_sender() needs create_receiver() first (its queue)")
        return MultiprocessingQueueRadioSender(self._queue)


class MultiprocessingQueueRadioReceiver(MonitoringRadioReceiver):
    """Nothing runs: senders put on the queue directly."""

    def shutdown(self) -> None:
        pass


__all__ = ["MultiprocessingQueueRadio", "MultiprocessingQueueRadioSender", "MultiprocessingQueueRadioReceiver"]
