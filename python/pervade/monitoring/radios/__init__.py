"""Parsl's monitoring radios (parsl.monitoring.radios), as configuration only.

In Parsl an executor's `remote_monitoring_radio` chooses how its workers' monitoring messages
travel to the database: UDP, the HighThroughputExecutor's own connection, files, or a
multiprocessing queue. pervade has one transport whatever the radio: the engine reports task
events in process, and pools send their resource samples and node facts over the link they
already keep with the interchange (docs/monitoring.md). A config that names a radio runs
unchanged and gets the same monitoring database; the radio's parameters are kept on the object
(so a script may read them back) and have no effect.
"""

from .base import RadioConfig
from .filesystem import FilesystemRadio
from .htex import HTEXRadio
from .multiprocessing import MultiprocessingQueueRadio
from .udp import UDPRadio

__all__ = ["RadioConfig", "FilesystemRadio", "HTEXRadio", "MultiprocessingQueueRadio", "UDPRadio"]
