"""What every Flotilla daemon shares: the service runner.

A :class:`Service` serves one RPC topic with a manager object (its public
methods are the RPC API), reports a heartbeat every ``[DEFAULT]
report_interval`` and runs the manager's periodic tasks. :func:`run_daemon`
is the body of every daemon's ``main``: it parses configuration (a bad value
is one line on stderr and exit status 2), selects the concurrency backend
before anything else starts, sets up logging, starts the services and stops
them cleanly on SIGTERM or SIGINT: stop consuming, let in-flight work finish
within ``[DEFAULT] graceful_shutdown_timeout``, close connections.

Under systemd (``Type=notify``) it tells systemd ``READY=1`` once every
service serves and ``STOPPING=1`` on the signal; with ``WatchdogSec=`` it
sends keep-alives while every service proves it works (see
:mod:`flotilla.systemd` and each service's ``alive()``).
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Protocol

from oslo_config import cfg

from flotilla import concurrency, periodic, systemd
from flotilla.conf import loader

LOG = logging.getLogger(__name__)


class Heartbeat(Protocol):
    def __call__(self, host: str, binary: str, topic: str,
                 rpc_version: str | None) -> None: ...


def db_heartbeat(host: str, binary: str, topic: str, rpc_version: str | None) -> None:
    """Heartbeat of services that own database access (scheduler, conductor)."""
    from flotilla.db import api as db
    db.service_heartbeat(host, binary, topic, rpc_version)


def heartbeat_timeout(conf: cfg.ConfigOpts) -> float:
    """Seconds one heartbeat sent over RPC waits for its answer.

    RPC is at most once: a heartbeat the conductor took and then died with
    gets no answer. Waiting the whole ``[rpc] call_timeout`` for it would hold
    the next heartbeat back past ``service_down_time`` and the host would look
    down (the scheduler skipping it) though nothing is wrong. So a heartbeat
    gives up after a third of ``service_down_time`` (at least
    ``report_interval``, at most ``call_timeout``), leaving room for the next.
    """
    return min(float(conf.rpc.call_timeout),
               max(float(conf.report_interval), conf.service_down_time / 3))


class Service:
    """One RPC server plus its heartbeat and periodic tasks.

    ``per_host`` services (compute agents) consume ``<topic>.<host>`` and the
    topic's fanout; shared services (scheduler, conductor) consume the shared
    ``<topic>`` queue as competing consumers.
    """

    def __init__(self, conf: cfg.ConfigOpts, binary: str, topic: str, manager,
                 transport=None, heartbeat: Heartbeat | None = db_heartbeat,
                 per_host: bool = False, host: str | None = None,
                 close_transport: bool | None = None) -> None:
        self.conf = conf
        self.binary = binary
        self.topic = topic
        self.manager = manager
        self.host = host or conf.host
        self.per_host = per_host
        self._transport = transport
        # Close the transport on stop if we made it (or are told to).
        self._owns_transport = transport is None if close_transport is None \
            else close_transport
        self._heartbeat = heartbeat
        self._server = None
        self._runner: periodic.PeriodicRunner | None = None
        # When the last heartbeat started and finished (monotonic), for alive().
        self._beat_started: float | None = None
        self._beat_finished: float | None = None

    def start(self) -> None:
        from flotilla import rpc
        if self._transport is None:
            self._transport = rpc.get_transport(self.conf)
        init_host = getattr(self.manager, "init_host", None)
        if init_host is not None:
            init_host()
        self._server = rpc.RPCServer(
            self._transport, topic=self.topic,
            server=self.host if self.per_host else None,
            endpoints=[self.manager])
        self._server.start()
        # What start-up left for when this service consumes its queue (a
        # report whose handling calls back here would find no one before).
        after_start = getattr(self.manager, "after_start", None)
        if after_start is not None:
            after_start()
        tasks = periodic.find_tasks(self.manager)
        if self._heartbeat is not None:
            # The first heartbeat before start() returns: a started service
            # is visible as up at once.
            self._report_state()
            tasks.append(self._report_state)
        self._runner = periodic.PeriodicRunner(tasks)
        self._runner.start()
        LOG.info("%s started on %s, serving topic %s%s", self.binary,
                 self.host, self.topic,
                 ".%s" % self.host if self.per_host else "")

    @periodic.periodic_task(spacing=lambda self: self.conf.report_interval)
    def _report_state(self) -> None:
        self._beat_started = time.monotonic()
        try:
            self._heartbeat(self.host, self.binary, self.topic,
                            getattr(self.manager, "RPC_API_VERSION", None))
        except Exception as exc:
            # A missed heartbeat only makes the service look down for a
            # while; the next one may get through.
            LOG.warning("%s: heartbeat failed: %s", self.binary, exc)
        finally:
            self._beat_finished = time.monotonic()

    def alive(self, within: float) -> bool | str:
        """True while the periodic loop keeps heartbeating, else what is wrong.

        Between heartbeats, the last one must have ended in the last
        ``within`` seconds: a loop stuck in another task (a hung libvirt
        call) stops them. A heartbeat under way may wait as long as the RPC
        layer lets one message wait (``[rpc] call_timeout`` plus
        ``reconnect_timeout``), so a broker, conductor or database that is
        away, which a restart would not cure, is not taken for a hang; one
        that fails counts as done. Without a heartbeat: True.
        """
        started, finished = self._beat_started, self._beat_finished
        if self._heartbeat is None or started is None:
            return True
        now = time.monotonic()
        if finished is None or started > finished:
            bound = self.conf.rpc.call_timeout + self.conf.rpc.reconnect_timeout
            if now - started <= bound:
                return True
            return "%s: heartbeat under way for %.0f s (longer than %d s)" % (
                self.binary, now - started, bound)
        if now - finished <= within:
            return True
        return "%s: no heartbeat for %.0f s (periodic tasks stuck?)" % (
            self.binary, now - finished)

    def stop(self, grace: float | None = None) -> bool:
        """Stop consuming, finish in-flight work within ``grace`` seconds.

        Returns True when all in-flight work finished in time.
        """
        if grace is None:
            grace = self.conf.graceful_shutdown_timeout
        clean = True
        if self._server is not None:
            self._server.stop()
        if self._runner is not None:
            self._runner.stop(timeout=grace)
        if self._server is not None:
            clean = self._server.wait(timeout=grace)
            if not clean:
                LOG.warning("%s: in-flight work did not finish within %ss",
                            self.binary, grace)
        cleanup_host = getattr(self.manager, "cleanup_host", None)
        if cleanup_host is not None:
            try:
                cleanup_host()
            except Exception:
                LOG.exception("%s: cleanup_host failed", self.binary)
        if self._owns_transport and self._transport is not None:
            self._transport.cleanup()
        LOG.info("%s on %s stopped", self.binary, self.host)
        return clean


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT; return the signal number."""
    received: list[int] = []
    stop = concurrency.Event()

    def handler(signum, frame):
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.is_set():
        # A timed wait keeps the main thread responsive to signals.
        stop.wait(1.0)
    return received[0]


def run_daemon(prog: str, make_services: Callable[[cfg.ConfigOpts], list],
               argv: list[str] | None = None) -> int:
    """Parse config, start the services, serve until SIGTERM/SIGINT."""
    from flotilla import log
    from flotilla.conf import CONF
    try:
        conf = loader.load(argv, prog, CONF)
    except loader.ConfigError as exc:
        print("%s: configuration error: %s" % (prog, exc), file=sys.stderr)
        return 2
    concurrency.setup(conf.concurrency_backend)
    log.setup(conf.debug)
    # A fatal signal (systemd's watchdog sends SIGABRT) prints every
    # thread's stack on stderr: the journal then shows where it hung.
    try:
        faulthandler.enable()
    except (AttributeError, ValueError, OSError):
        pass    # a stderr without a file descriptor (in-process tests)
    try:
        services = make_services(conf)
        for svc in services:
            svc.start()
    except loader.ConfigError as exc:
        LOG.error("configuration error: %s", exc)
        return 2
    except Exception as exc:
        LOG.error("%s failed to start: %s: %s", prog, type(exc).__name__, exc)
        LOG.debug("start-up failure", exc_info=True)
        return 1
    systemd.notify("READY=1", "STATUS=serving")
    watchdog = _start_watchdog(conf, services)
    signum = wait_for_signal()
    systemd.notify("STOPPING=1", "STATUS=stopping: finishing in-flight work")
    LOG.info("%s: received %s, stopping", prog, signal.Signals(signum).name)
    if watchdog is not None:
        watchdog.stop()
    clean = True
    for svc in reversed(services):
        clean = svc.stop(conf.graceful_shutdown_timeout) and clean
    return 0 if clean else 1


def _start_watchdog(conf: cfg.ConfigOpts, services: list) -> systemd.Watchdog | None:
    """Keep-alives for systemd's ``WatchdogSec=`` while every service is
    alive; None when the unit sets no watchdog."""
    interval = systemd.watchdog_interval()
    if interval is None:
        return None
    # Between heartbeats: as long as the cloud waits before it calls the
    # service down.
    within = max(conf.service_down_time, 2 * conf.report_interval)
    checks = [svc.alive for svc in services if hasattr(svc, "alive")]

    def alive() -> bool | str:
        for check in checks:
            verdict = check(within)
            if verdict is not True:
                return verdict
        return True

    watchdog = systemd.Watchdog(interval, alive)
    watchdog.start()
    LOG.info("systemd watchdog: a keep-alive every %.1f s while alive "
             "(WatchdogSec=%.0f s)", interval / 4, interval)
    return watchdog
