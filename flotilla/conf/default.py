"""[DEFAULT] options: identity of this service and where its state lives."""

from __future__ import annotations

import socket

from oslo_config import cfg

from flotilla.conf import types

default_opts = [
    cfg.StrOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<current hostname>",
        help="Name of this host. A compute agent consumes the queue "
             "compute.<host>; every service reports its heartbeat under it. "
             "Must be unique in the cloud."),
    cfg.StrOpt(
        "state_path",
        default="/var/lib/flotilla",
        help="Directory where Flotilla keeps its local state (the SQLite "
             "database of the embedded default, caches)."),
    cfg.Opt(
        "transport_url",
        type=types.TransportURL(),
        default="memory://",
        secret=True,
        help="Messaging URL: rabbit://USER:PASS@HOST:PORT/VHOST for RabbitMQ "
             "or memory:// for every service in one process (tests and "
             "flotilla-all)."),
    cfg.StrOpt(
        "concurrency_backend",
        default="threading",
        choices=[("threading", "native threads (the default)"),
                 ("eventlet", "monkey-patched green threads; blocking "
                              "libvirt calls run through eventlet.tpool")],
        help="How a daemon runs concurrent work."),
    cfg.IntOpt(
        "report_interval",
        default=10,
        min=1,
        help="Seconds between two heartbeats of a service into the "
             "services table."),
    cfg.IntOpt(
        "service_down_time",
        default=60,
        min=1,
        help="A service whose last heartbeat is older than this many "
             "seconds is considered down."),
    cfg.IntOpt(
        "graceful_shutdown_timeout",
        default=30,
        min=0,
        help="Seconds a stopping service waits for in-flight work to "
             "finish after SIGTERM before it exits anyway."),
    cfg.IntOpt(
        "reclaim_instance_interval",
        default=0,
        min=0,
        help="Seconds a deleted server stays soft-deleted (status "
             "SOFT_DELETED, powered off, still counted in quotas) before the "
             "conductor deletes it for good; while it does, its owner may "
             "restore it (the restore action) and an admin or the owner may "
             "delete it at once (forceDelete). 0, the default, deletes at "
             "once, as Nova does."),
    cfg.IntOpt(
        "resize_confirm_window",
        default=0,
        min=0,
        help="Seconds a resized or cold-migrated server waits in "
             "VERIFY_RESIZE before the conductor confirms the move by itself "
             "(removing the source copy). 0, the default, never confirms "
             "automatically, as Nova."),
    cfg.BoolOpt(
        "allow_resize_to_same_host",
        default=False,
        help="Let the scheduler choose a server's own host for a resize "
             "(never for a cold migration, as Nova). The guest is then "
             "defined again on that host with its new flavor while its "
             "original is kept for a revert, and the host holds both claims "
             "until the resize is confirmed or reverted. Read by the "
             "conductor."),
    cfg.BoolOpt(
        "debug",
        default=False,
        help="Log at DEBUG level instead of INFO."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(default_opts)


def list_opts() -> dict:
    return {"DEFAULT": default_opts}
