"""Parsl's parsl.monitoring.radios.udp: UDPRadio (configuration only)."""

from __future__ import annotations

from .base import RadioConfig


class UDPRadio(RadioConfig):
    """Parsl sends monitoring messages as HMAC-signed UDP datagrams to `address`:`port`; pervade
    uses its pool link (pervade.monitoring.radios). The parameters are Parsl's and are kept."""

    def __init__(self, *, port: int | None = None, atexit_timeout: int = 3, address: str, debug: bool = False,
                 hmac_digest: str = "sha512"):
        self.port = port
        self.atexit_timeout = atexit_timeout
        self.address = address
        self.debug = debug
        self.hmac_digest = hmac_digest
