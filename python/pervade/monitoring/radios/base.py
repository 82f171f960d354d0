"""Parsl's parsl.monitoring.radios.base: the interfaces of a radio.

A radio carries monitoring messages (`(MessageType, dict)` pairs) from senders, possibly in other
processes or on other hosts, to a receiver that puts them on a queue. Its configuration object
(a RadioConfig) is used in this order: `create_receiver()` once, where the messages are wanted;
that may record on the config what senders need (a port, a key), and the config is then pickled
to wherever senders run; there `create_sender()` makes a sender, whose `send()` is called for
each message; at the end the receiver's `shutdown()`. A config serves one run.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from multiprocessing.queues import Queue

from ...utils import RepresentationMixin


class MonitoringRadioReceiver(metaclass=ABCMeta):
    """The receiving end of a radio; `shutdown()` is called once, by whoever created it."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stops receiving and releases what the receiver holds (a process, a socket)."""


class MonitoringRadioSender(metaclass=ABCMeta):
    """The sending end of a radio, in the process that sends."""

    @abstractmethod
    def send(self, message: object) -> None:
        """Sends one message (a picklable object, normally `(MessageType, dict)`)."""


class RadioConfig(RepresentationMixin, metaclass=ABCMeta):
    """How monitoring messages travel from senders to a receiver (see the module's doc).

    An executor's `remote_monitoring_radio` takes one (Parsl's configs name them); pervade's own
    monitoring does not go through radios (docs/monitoring.md), users' code may.
    """

    @abstractmethod
    def create_receiver(self, *, run_dir: str, resource_msgs: Queue) -> MonitoringRadioReceiver:
        """Starts receiving: every message a sender sends is put on `resource_msgs`. Logs go to
        `run_dir`. Records on this config what `create_sender()` needs."""

    @abstractmethod
    def create_sender(self) -> MonitoringRadioSender:
        """A sender to the receiver of an earlier `create_receiver()` (on this config or a
        pickled copy of it)."""
