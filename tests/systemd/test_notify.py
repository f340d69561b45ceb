"""sd_notify and the watchdog (flotilla/systemd.py), the services' alive()
checks and the daemon runner's notifications, against a real datagram
socket standing in for systemd's (no container needed)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import pytest

from api.wsgi_server import WSGIService
from flotilla import service, systemd
from tests.fixtures.waiting import wait_until


class FakeSystemd:
    """A notify socket: a path, or an abstract name (``@...``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.settimeout(10)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch):
    path = (str(tmp_path / "notify") if request.param == "path"
            else "@flotilla-test-%s" % uuid.uuid4().hex)
    fake = FakeSystemd(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield fake
    fake.close()


def test_notify_sends_one_datagram(notify_socket):
    assert systemd.notify("READY=1", "STATUS=serving")
    assert notify_socket.receive() == ["READY=1", "STATUS=serving"]


def test_notify_outside_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_never_raises(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING):
        assert systemd.notify("READY=1") is False
    assert "cannot notify systemd" in caplog.text


def test_watchdog_interval_is_for_this_process_only(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 4.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 4.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_interval() is None


def test_the_watchdog_pings_only_while_alive(notify_socket, caplog):
    verdict = {"now": True}
    dog = systemd.Watchdog(0.2, lambda: verdict["now"])
    dog.start()
    try:
        assert notify_socket.receive() == ["WATCHDOG=1"]
        assert notify_socket.receive() == ["WATCHDOG=1"]
        with caplog.at_level(logging.ERROR):
            verdict["now"] = "the loop is stuck"
            # Drain pings sent before the change; then silence.
            notify_socket.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                while True:
                    notify_socket.receive()
        assert caplog.text.count("watchdog: the loop is stuck") == 1
        verdict["now"] = True
        notify_socket.sock.settimeout(10)
        assert notify_socket.receive() == ["WATCHDOG=1"]
    finally:
        dog.stop()


def test_a_failing_check_counts_as_not_alive(notify_socket, caplog):
    def boom():
        raise RuntimeError("no idea")
    dog = systemd.Watchdog(0.2, boom)
    with caplog.at_level(logging.ERROR):
        dog.start()
        deadline = time.monotonic() + 10
        while "liveness check failed: RuntimeError: no idea" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        dog.stop()
    assert dog.pings == 0


def test_service_alive_follows_heartbeats(conf):
    conf.set_override("call_timeout", 3, group="rpc")
    conf.set_override("reconnect_timeout", 4, group="rpc")
    beats = []
    svc = service.Service(conf, "flotilla-test", "test", object(),
                          heartbeat=lambda *a: beats.append(a))
    assert svc.alive(1) is True            # not started: nothing to prove yet
    svc._report_state()
    assert beats and svc.alive(1) is True
    svc._beat_started -= 5
    svc._beat_finished -= 5
    assert svc.alive(1) == "flotilla-test: no heartbeat for 5 s (periodic tasks stuck?)"
    assert svc.alive(10) is True

    def failing(*args):
        raise OSError("database away")
    svc._heartbeat = failing
    svc._report_state()                    # failed, but the loop runs
    assert svc.alive(1) is True


def test_a_heartbeat_under_way_may_take_what_the_rpc_layer_allows(conf):
    conf.set_override("call_timeout", 3, group="rpc")
    conf.set_override("reconnect_timeout", 4, group="rpc")
    svc = service.Service(conf, "flotilla-test", "test", object(), heartbeat=lambda *a: None)
    svc._report_state()
    svc._beat_finished -= 20               # the last one ended long ago ...
    svc._beat_started = time.monotonic() - 6    # ... and one is waiting since
    assert svc.alive(1) is True
    svc._beat_started -= 2
    assert svc.alive(1) == "flotilla-test: heartbeat under way for 8 s (longer than 7 s)"


def test_wsgi_service_is_answering_when_started(caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    server = WSGIService(app, "127.0.0.1", 0, threads=1)
    with caplog.at_level(logging.INFO):
        server.start()
        try:
            assert server.probe(timeout=5) is True
            assert server.alive(5) is True
        finally:
            assert server.stop(5)
    assert "flotilla-api on http://127.0.0.1:%d stopped" % server.port in caplog.text


def test_wsgi_service_busy_workers_count_as_alive():
    release = threading.Event()

    def app(environ, start_response):
        release.wait(30)
        start_response("200 OK", [])
        return [b""]
    server = WSGIService(app, "127.0.0.1", 0, threads=1)
    # Serving without start(): its readiness probe would wait on the app.
    server._server.accept_connections()
    thread = threading.Thread(target=server._serve, daemon=True)
    server._thread = thread
    thread.start()
    try:
        busy = threading.Thread(target=server.probe, args=(30,), daemon=True)
        busy.start()                     # occupies the only worker
        wait_until(lambda: server._server.task_dispatcher.active_count >= 1, 10,
                   "the only worker to be busy", interval=0.01)
        assert server.probe(timeout=0.3) is not True
        assert server.alive(0.3) is True
    finally:
        release.set()
        server.stop(5)


def test_run_daemon_notifies_ready_and_stopping(notify_socket, monkeypatch, conf):
    """READY=1 after every service started, STOPPING=1 on the signal, and
    the grace period handed to each stop()."""
    events = []

    class Recorder:
        def start(self):
            events.append("start")

        def stop(self, grace=None):
            events.append(("stop", grace))
            return True

    monkeypatch.setattr(service, "wait_for_signal", lambda: 15)
    monkeypatch.setattr(service.loader, "load", lambda argv, prog, c: conf)
    monkeypatch.setattr("flotilla.log.setup", lambda debug: None)
    monkeypatch.setattr(service.faulthandler, "enable", lambda: None)
    assert service.run_daemon("flotilla-test", lambda c: [Recorder()], argv=[]) == 0
    assert notify_socket.receive() == ["READY=1", "STATUS=serving"]
    assert notify_socket.receive()[0] == "STOPPING=1"
    assert events == ["start", ("stop", 30)]
