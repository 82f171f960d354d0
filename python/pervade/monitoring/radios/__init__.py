"""Parsl's monitoring radios (parsl.monitoring.radios): ways to carry monitoring messages
(`(MessageType, dict)` pairs) from senders to a receiver that puts them on a queue.

- UDPRadio: HMAC-signed UDP datagrams to a receiver process (udp, udp_router);
- FilesystemRadio: files in the run directory, read by a receiver process (filesystem,
  filesystem_router);
- MultiprocessingQueueRadio: straight onto the queue (multiprocessing);
- ZMQRadioSender and start_zmq_receiver: a ZeroMQ socket, CurveZMQ with a cert_dir (zmq,
  zmq_router);
- HTEXRadio: the HighThroughputExecutor's own link (htex).

An executor's `remote_monitoring_radio` takes a radio configuration, as in Parsl. pervade's own
monitoring does not use radios: the engine reports task events in process, and pools send their
resource samples and node facts over the link they keep with the interchange (docs/monitoring.md),
so a config that names a radio gets the same monitoring database whatever the radio. The radios
work for users' code that sends and receives its own messages (docs/monitoring.md, "Radios").
"""

from .base import MonitoringRadioReceiver, MonitoringRadioSender, RadioConfig
from .filesystem import FilesystemRadio
from .htex import HTEXRadio
from .multiprocessing import MultiprocessingQueueRadio
from .udp import UDPRadio

__all__ = ["RadioConfig", "MonitoringRadioReceiver", "MonitoringRadioSender", "FilesystemRadio", "HTEXRadio",
           "MultiprocessingQueueRadio", "UDPRadio"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ..._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
