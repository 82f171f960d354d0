"""Parsl's parsl.monitoring.radios.htex: HTEXRadio, the HighThroughputExecutor's default radio.

In Parsl it sends workers' monitoring messages back over the executor's result channel. pervade's
pools already send their monitoring over the link they keep with the interchange
(docs/monitoring.md), so there is nothing to receive, and that link takes no messages from users'
code: `create_sender()` says so (use UDPRadio, FilesystemRadio or ZMQRadioSender to send your own).
"""

from __future__ import annotations

from multiprocessing.queues import Queue

from .base import MonitoringRadioReceiver, MonitoringRadioSender, RadioConfig


class HTEXRadio(RadioConfig):
    """Monitoring over the HighThroughputExecutor's own connection: what pervade's pools do."""

    def create_receiver(self, *, run_dir: str, resource_msgs: Queue) -> MonitoringRadioReceiver:
        return HTEXRadioReceiver()

    def create_sender(self) -> MonitoringRadioSender:
        raise NotImplementedError("pervade's HighThroughputExecutor link carries its pools' own monitoring, not "
                                  "messages from users' code: send them with UDPRadio, FilesystemRadio or "
                                  "ZMQRadioSender (docs/monitoring.md)")


class HTEXRadioReceiver(MonitoringRadioReceiver):
    """Nothing to stop: the executor's own link carries the pools' monitoring."""

    def shutdown(self) -> None:
        pass


__all__ = ["HTEXRadio", "HTEXRadioReceiver"]
