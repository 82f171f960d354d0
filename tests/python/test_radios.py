"""Parsl's monitoring radios as working APIs (pervade.monitoring.radios): a message sent through
each radio (UDP, filesystem, multiprocessing queue, ZeroMQ with and without CurveZMQ) arrives on
the receiver's queue; the UDP receiver drops datagrams whose HMAC does not match; receiver
processes are gone after shutdown(); join_terminate_close_proc ends a process that ignores
SIGTERM; Parsl's module paths work under `pervade run`, in spawned children too. Real processes,
sockets and files throughout."""

import multiprocessing
import os
import signal
import socket
import textwrap

import pytest

from pervade.errors import ParslError
from pervade.monitoring.errors import MonitoringRouterStartError
from pervade.monitoring.message_type import MessageType
from pervade.monitoring.radios import HTEXRadio, RadioConfig
from pervade.monitoring.radios.filesystem import FilesystemRadio
from pervade.monitoring.radios.multiprocessing import MultiprocessingQueueRadio
from pervade.monitoring.radios.udp import UDPRadio
from pervade.multiprocessing import SpawnEvent, SpawnProcess, SpawnQueue, join_terminate_close_proc

from conftest import pid_alive, wait_until
from test_compat_run import real_parsl, run  # noqa: F401  (real_parsl: a fixture)

zmq = pytest.importorskip("zmq")

from pervade import curvezmq  # noqa: E402  (needs pyzmq)
from pervade.monitoring.radios.zmq import ZMQRadioSender  # noqa: E402
from pervade.monitoring.radios.zmq_router import start_zmq_receiver  # noqa: E402

TIMEOUT = 60  # s: a receiver process is a fresh interpreter importing pervade, on a loaded machine


def message(n=0):
    return (MessageType.RESOURCE_INFO, {"n": n, "payload": "x" * 100})


def assert_stopped(receiver, pid):
    """After shutdown(): the process has ended (no such pid) and is closed, as Parsl's tests check."""
    assert not pid_alive(pid), f"receiver process {pid} still there after shutdown()"
    with pytest.raises(ValueError):
        receiver.process.exitcode  # noqa: B018  (a closed Process raises on access)


def send_in_child(radio, messages):
    """In a spawn child: a sender from the pickled radio config, as on a remote worker."""
    sender = radio.create_sender()
    for m in messages:
        sender.send(m)


def run_child(target, *args):
    p = SpawnProcess(target=target, args=args)
    p.start()
    p.join(TIMEOUT)
    exitcode = p.exitcode
    join_terminate_close_proc(p, timeout=5)
    assert exitcode == 0, f"sender child ended with {exitcode}"


@pytest.mark.parametrize("make_radio", [lambda: UDPRadio(address="localhost", atexit_timeout=0), FilesystemRadio],
                         ids=["udp", "filesystem"])
def test_messages_from_another_process_arrive_and_the_receiver_process_ends(make_radio, tmp_path):
    radio = make_radio()
    q = SpawnQueue()
    receiver = radio.create_receiver(run_dir=str(tmp_path), resource_msgs=q)
    pid = receiver.process.pid
    assert pid_alive(pid)
    run_child(send_in_child, radio, [message(0), message(1)])
    assert [q.get(timeout=TIMEOUT) for _ in range(2)] == [message(0), message(1)]
    receiver.shutdown()
    assert_stopped(receiver, pid)
    assert q.empty()


def test_udp_key_is_made_per_receiver_with_the_digest_size(tmp_path):
    radio = UDPRadio(address="127.0.0.1", atexit_timeout=0, hmac_digest="sha256")
    with pytest.raises(RuntimeError, match="create_receiver"):
        radio.create_sender()
    receiver = radio.create_receiver(run_dir=str(tmp_path), resource_msgs=SpawnQueue())
    try:
        assert len(radio.hmac_key) == 32 and isinstance(radio.port, int)
        assert repr(radio) == ("UDPRadio(address='127.0.0.1', atexit_timeout=0, debug=False, hmac_digest='sha256', "
                               f"port={radio.port})")
    finally:
        receiver.shutdown()


def send_bad_datagram(radio, kind):
    if kind == "empty":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"", (radio.address, radio.port))
        return
    if kind == "wrong key":
        radio.hmac_key = bytes(b ^ 1 for b in radio.hmac_key)
    else:
        radio.hmac_digest = "sha3_224"
    radio.create_sender().send(message(666))


@pytest.mark.parametrize("kind", ["wrong key", "wrong digest", "empty"])
def test_udp_drops_datagrams_whose_hmac_does_not_match(kind, tmp_path):
    radio = UDPRadio(address="localhost", atexit_timeout=0)
    q = SpawnQueue()
    receiver = radio.create_receiver(run_dir=str(tmp_path), resource_msgs=q)
    good = UDPRadio(address="localhost", atexit_timeout=0)
    good.port, good.hmac_key, good.hmac_digest = radio.port, radio.hmac_key, radio.hmac_digest
    send_bad_datagram(radio, kind)
    log = tmp_path / "monitoring_udp_router.log"
    assert wait_until(lambda: "HMAC does not match on received message" in log.read_text(), timeout=TIMEOUT)
    assert "ERROR" in log.read_text()
    good.create_sender().send(message(1))
    # The receiver goes on after the bad datagram; what reaches the queue is the good message only
    # (checked once the receiver has ended, when nothing more can arrive).
    assert q.get(timeout=TIMEOUT) == message(1)
    assert receiver.process.is_alive()
    pid = receiver.process.pid
    receiver.shutdown()
    assert_stopped(receiver, pid)
    assert q.empty()


def test_udp_receiver_that_cannot_bind_fails_and_leaves_no_process(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        radio = UDPRadio(address="localhost", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="Could not bind to udp_port"):
            radio.create_receiver(run_dir=str(tmp_path), resource_msgs=SpawnQueue())
    assert not [p for p in multiprocessing.active_children() if p.name == "Monitoring-UDP-Router-Process"]


def test_receiver_process_that_dies_while_starting_is_an_error_at_once(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    # The process cannot even open its log under `run_dir`: it ends before it reports ready.
    with pytest.raises(MonitoringRouterStartError, match="ended with exit code 1 before it was ready"):
        FilesystemRadio().create_receiver(run_dir=str(not_a_dir), resource_msgs=SpawnQueue())
    assert not [p for p in multiprocessing.active_children() if p.name == "Monitoring-Filesystem-Process"]


def test_filesystem_messages_sent_before_shutdown_all_arrive_in_order(tmp_path):
    radio = FilesystemRadio()
    q = SpawnQueue()
    receiver = radio.create_receiver(run_dir=str(tmp_path), resource_msgs=q)
    sender = radio.create_sender()
    for n in range(5):
        sender.send(message(n))
    receiver.shutdown()  # its last pass over new/ comes after the exit was asked
    assert [q.get(timeout=TIMEOUT) for _ in range(5)] == [message(n) for n in range(5)]
    radio_dir = tmp_path / "monitor-fs-radio"
    assert os.listdir(radio_dir / "new") == [] and os.listdir(radio_dir / "tmp") == []


def test_multiprocessing_radio_takes_messages_from_child_processes(tmp_path):
    radio = MultiprocessingQueueRadio()
    q = SpawnQueue()
    receiver = radio.create_receiver(run_dir=str(tmp_path), resource_msgs=q)
    run_child(send_in_child, radio, [message(7)])  # the child inherits the queue with the config
    assert q.get(timeout=TIMEOUT) == message(7)
    receiver.shutdown()


def test_htex_radio_has_nothing_to_receive_and_takes_no_messages(tmp_path):
    radio = HTEXRadio()
    radio.create_receiver(run_dir=str(tmp_path), resource_msgs=SpawnQueue()).shutdown()
    with pytest.raises(NotImplementedError, match="UDPRadio"):
        radio.create_sender()


def test_a_radio_config_must_implement_both_ends():
    class HalfRadio(RadioConfig):
        def create_sender(self):
            return None

    with pytest.raises(TypeError, match="create_receiver"):
        HalfRadio()


def send_with_zmq(address, port, cert_dir, messages):
    sender = ZMQRadioSender(address, port, cert_dir=cert_dir)
    for m in messages:
        sender.send(m)
    sender.close()  # waits until they are sent


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "curve"])
def test_zmq_messages_arrive_and_the_receiver_ends_on_its_exit_event(encrypted, tmp_path):
    cert_dir = curvezmq.create_certificates(tmp_path) if encrypted else None
    q = SpawnQueue()
    r = start_zmq_receiver(monitoring_messages=q, loopback_address="127.0.0.1", port_range=(49152, 65535),
                           logdir=str(tmp_path), worker_debug=False, cert_dir=cert_dir)
    pid = r.process.pid
    try:
        run_child(send_with_zmq, "127.0.0.1", r.port, cert_dir, [("test", {}), message(3)])
        assert [q.get(timeout=TIMEOUT) for _ in range(2)] == [("test", {}), message(3)]
        assert r.process.is_alive()
        r.exit_event.set()  # as Parsl's test stops it
        assert wait_until(lambda: not r.process.is_alive(), timeout=TIMEOUT)
    finally:
        r.close()
    assert_stopped(r, pid)
    log = (tmp_path / "monitoring_zmq_router.log").read_text()
    assert ("(CurveZMQ)" in log) == encrypted


def test_curve_receiver_rejects_a_client_without_its_keys(tmp_path):
    cert_dir = curvezmq.create_certificates(tmp_path)
    q = SpawnQueue()
    r = start_zmq_receiver(monitoring_messages=q, loopback_address="127.0.0.1", port_range=(49152, 65535),
                           logdir=str(tmp_path), worker_debug=False, cert_dir=cert_dir)
    pid = r.process.pid
    # A plaintext sender's message never arrives (its handshake fails); the keyed sender's does.
    # The intruder sends from this process, so that its socket can be dropped unsent.
    intruder = zmq.Context()
    try:
        sock = intruder.socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{r.port}")
        sock.send_pyobj(message(666))
        run_child(send_with_zmq, "127.0.0.1", r.port, cert_dir, [message(1)])
        assert q.get(timeout=TIMEOUT) == message(1)
    finally:
        intruder.destroy(linger=0)
        r.shutdown()
    assert_stopped(r, pid)
    assert q.empty()


def test_certificates_directory_is_private(tmp_path):
    cert_dir = curvezmq.create_certificates(tmp_path)
    assert os.stat(cert_dir).st_mode & 0o777 == 0o700
    assert {"server.key", "server.key_secret", "client.key", "client.key_secret"} <= set(os.listdir(cert_dir))
    os.chmod(cert_dir, 0o755)
    with pytest.raises(OSError, match="must be private"):
        curvezmq.ClientContext(cert_dir).socket(zmq.DEALER)


# -- pervade.multiprocessing.join_terminate_close_proc ---------------------------------------


def ignore_sigterm(installed, got_sigterm):
    signal.signal(signal.SIGTERM, lambda *_: got_sigterm.set())
    installed.set()
    while True:
        signal.pause()


def test_exit_helper_kills_a_process_that_ignores_sigterm():
    installed, got_sigterm = SpawnEvent(), SpawnEvent()
    p = SpawnProcess(target=ignore_sigterm, args=(installed, got_sigterm))
    p.start()
    pid = p.pid
    assert installed.wait(TIMEOUT), "the child never installed its SIGTERM handler"
    join_terminate_close_proc(p, timeout=1)
    assert got_sigterm.is_set(), "SIGTERM comes before SIGKILL"
    assert not pid_alive(pid)
    with pytest.raises(ValueError):
        p.exitcode  # noqa: B018  (closed)


def wait_for_sigterm(installed):
    installed.set()
    signal.pause()


def test_exit_helper_ends_a_process_with_sigterm_and_closes_one_that_exited():
    installed = SpawnEvent()
    p = SpawnProcess(target=wait_for_sigterm, args=(installed,))
    p.start()
    pid = p.pid
    assert installed.wait(TIMEOUT)
    join_terminate_close_proc(p, timeout=0.5)
    assert not pid_alive(pid)

    done = SpawnProcess(target=print, args=("done",))
    done.start()
    done.join(TIMEOUT)
    join_terminate_close_proc(done)  # already ended: only closed
    with pytest.raises(ValueError):
        done.exitcode  # noqa: B018


def test_router_start_error_names_its_reason():
    assert isinstance(MonitoringRouterStartError(), ParslError)
    assert str(MonitoringRouterStartError()) == "Monitoring router failed to start"
    assert str(MonitoringRouterStartError("x ended")) == "Monitoring router failed to start: x ended"
# -- Parsl's module paths under `pervade run` --------------------------------------------------

IMPORTS_SCRIPT = """
    import parsl.curvezmq, parsl.multiprocessing, pervade
    from parsl.monitoring.message_type import MessageType
    from parsl.monitoring.radios.udp import UDPRadio
    from parsl.monitoring.radios.udp_router import start_udp_receiver
    from parsl.monitoring.radios.filesystem import FilesystemRadio
    from parsl.monitoring.radios.zmq import ZMQRadioSender
    from parsl.monitoring.radios.zmq_router import start_zmq_receiver
    from parsl.monitoring.types import TaggedMonitoringMessage
    from parsl.multiprocessing import SpawnQueue

    if __name__ == "__main__":
        import pervade.monitoring.radios.udp
        assert UDPRadio is pervade.monitoring.radios.udp.UDPRadio
        assert parsl.multiprocessing is pervade.multiprocessing
        q = SpawnQueue()
        radio = UDPRadio(address="127.0.0.1", atexit_timeout=0)
        receiver = radio.create_receiver(run_dir="logs", resource_msgs=q)
        radio.create_sender().send((MessageType.NODE_INFO, {"host": "a"}))
        print(q.get(timeout=60))
        receiver.shutdown()
"""


def test_parsl_module_paths_resolve_under_pervade_run(tmp_path):
    script = tmp_path / "radios.py"
    script.write_text(textwrap.dedent(IMPORTS_SCRIPT))
    r = run(["run", str(script)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(<MessageType.NODE_INFO: 3>, {'host': 'a'})"


SPAWN_SCRIPT = """
    import parsl
    from parsl.multiprocessing import SpawnProcess, SpawnQueue

    def report(q):
        import parsl.tests.helper as h
        q.put((parsl.__name__, h.KIND))

    if __name__ == "__main__":
        q = SpawnQueue()
        p = SpawnProcess(target=report, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join()
"""


def test_spawn_children_map_parsl_too_even_beside_a_real_parsl(tmp_path, real_parsl):
    # The child re-imports this script (`import parsl`) before anything else: the stand-in on its
    # sys.path installs the mapping, ahead of the real Parsl on PYTHONPATH; parsl.tests stays real.
    script = tmp_path / "spawner.py"
    script.write_text(textwrap.dedent(SPAWN_SCRIPT))
    r = run(["run", "--parsl-tests", str(script)], cwd=tmp_path, env_extra={"PYTHONPATH": str(real_parsl)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "('pervade', (False, 'pervade'))"
