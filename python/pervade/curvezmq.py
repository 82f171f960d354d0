"""Parsl's parsl.curvezmq: ZeroMQ contexts whose sockets use CurveZMQ encryption, with keys from a
certificate directory (pyzmq's certificate files).

>>> cert_dir = create_certificates("runinfo")           # runinfo/certificates, mode 0700
>>> server = ServerContext(cert_dir).socket(zmq.DEALER)   # accepts only the directory's client keys
>>> client = ClientContext(cert_dir).socket(zmq.DEALER)   # trusts only the directory's server key
>>> ServerContext(None).socket(zmq.DEALER)                # cert_dir None: no encryption

pervade's own HighThroughputExecutor link does its CurveZMQ in C++ (libzmq, a key pair per run:
docs/htex.md); this module is for Python code that speaks ZeroMQ itself, such as the monitoring
radios' ZMQRadioSender and start_zmq_receiver, and users' code written for Parsl. It needs pyzmq.
"""

from __future__ import annotations

import os
from abc import ABCMeta, abstractmethod
from typing import Optional, Tuple, Union

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

PathLike = Union[str, "os.PathLike[str]"]


def create_certificates(base_dir: PathLike) -> str:
    """Makes a server and a client key pair (pyzmq's `server.key`, `server.key_secret`,
    `client.key`, `client.key_secret`) in `<base_dir>/certificates`, a directory of mode 0700
    (made if missing; existing key files are replaced). Returns the directory."""
    cert_dir = os.path.join(base_dir, "certificates")
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    for name in ("server", "client"):
        zmq.auth.create_certificates(cert_dir, name=name)
    return cert_dir


def _load_certificate(cert_dir: PathLike, name: str, *, secret: bool = True) -> Tuple[bytes, Optional[bytes]]:
    """(public key, secret key) of `name` in `cert_dir`, or (public key, None) with `secret`
    False (a client needs only the server's public key). The directory must be private (mode
    0700): anyone who can read a secret key can pose as its owner."""
    if os.stat(cert_dir).st_mode & 0o777 != 0o700:
        raise OSError(f"The certificates directory must be private (mode 0700): {cert_dir}")
    key_file = os.path.join(cert_dir, f"{name}.key_secret" if secret else f"{name}.key")
    public_key, secret_key = zmq.auth.load_certificate(key_file)
    if secret and secret_key is None:
        raise ValueError(f"No secret key found in {key_file}")
    return public_key, secret_key


class BaseContext(metaclass=ABCMeta):
    """A ZeroMQ context whose `socket()` applies the CurveZMQ keys of `cert_dir` (None: none).
    The thread rules are ZeroMQ's: the context is thread-safe, each socket is used by one thread."""

    def __init__(self, cert_dir: Optional[PathLike]) -> None:
        self.cert_dir = cert_dir
        self._ctx = zmq.Context()

    @property
    def encrypted(self) -> bool:
        """Whether sockets are encrypted (a `cert_dir` was given)."""
        return self.cert_dir is not None

    @property
    def closed(self) -> bool:
        return self._ctx.closed

    @abstractmethod
    def socket(self, socket_type: int, *args, **kwargs) -> zmq.Socket:
        """A socket of `socket_type` (zmq.DEALER, zmq.ROUTER, ...) with the keys and options set;
        other arguments go to zmq.Context.socket."""

    def term(self) -> None:
        """Terminates the context (waits for its sockets to be closed)."""
        self._ctx.term()

    def destroy(self, linger: Optional[int] = None) -> None:
        """Closes every socket of the context (with LINGER `linger` if given), then terminates it.
        Not while other threads use its sockets (zmq_close is not thread-safe)."""
        self._ctx.destroy(linger)


class ServerContext(BaseContext):
    """Server side: its sockets hold the server's secret key and accept only clients whose public
    key is in `cert_dir`, checked by a ZAP authenticator thread of this context."""

    def __init__(self, cert_dir: Optional[PathLike]) -> None:
        super().__init__(cert_dir)
        self.auth_thread: Optional[ThreadAuthenticator] = None
        if self.encrypted:
            self.auth_thread = ThreadAuthenticator(self._ctx)
            self.auth_thread.start()
            self.auth_thread.configure_curve(domain="*", location=str(cert_dir))

    def socket(self, socket_type: int, *args, **kwargs) -> zmq.Socket:
        sock = self._ctx.socket(socket_type, *args, **kwargs)
        if self.encrypted:
            # The server needs only its secret key; clients bring the server's public key.
            _, secret_key = _load_certificate(self.cert_dir, "server")
            try:
                sock.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
            except zmq.ZMQError as e:
                raise ValueError("Invalid CurveZMQ key format") from e
            sock.setsockopt(zmq.CURVE_SERVER, True)  # before bind
        sock.setsockopt(zmq.IPV6, True)  # IPv6 as well as IPv4
        return sock

    def _stop_auth_thread(self) -> None:
        if self.auth_thread is not None:
            self.auth_thread.stop()
            self.auth_thread = None

    def term(self) -> None:
        self._stop_auth_thread()
        super().term()

    def destroy(self, linger: Optional[int] = None) -> None:
        self._stop_auth_thread()
        super().destroy(linger)

    def __del__(self) -> None:
        if getattr(self, "auth_thread", None) is not None:
            self._stop_auth_thread()


class ClientContext(BaseContext):
    """Client side: its sockets hold the client's key pair and the server's public key."""

    def socket(self, socket_type: int, *args, **kwargs) -> zmq.Socket:
        sock = self._ctx.socket(socket_type, *args, **kwargs)
        if self.encrypted:
            public_key, secret_key = _load_certificate(self.cert_dir, "client")
            server_public_key, _ = _load_certificate(self.cert_dir, "server", secret=False)
            try:
                sock.setsockopt(zmq.CURVE_PUBLICKEY, public_key)
                sock.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
                sock.setsockopt(zmq.CURVE_SERVERKEY, server_public_key)
            except zmq.ZMQError as e:
                raise ValueError("Invalid CurveZMQ key format") from e
        sock.setsockopt(zmq.IPV6, True)
        return sock


__all__ = ["create_certificates", "BaseContext", "ServerContext", "ClientContext"]
