"""[DEFAULT] options of host drains (``flotilla-manage host drain``)."""

from __future__ import annotations

from oslo_config import cfg

drain_opts = [
    cfg.IntOpt(
        "max_concurrent_live_migrations",
        default=2,
        min=1,
        help="Live migrations a host drain runs at once (each is a full "
             "copy of a guest's memory and local disk between two hosts; "
             "more at once share the same link)."),
    cfg.FloatOpt(
        "drain_poll_interval",
        default=2.0,
        min=0.1,
        help="Seconds between two looks of a host drain at its running "
             "migrations (their progress is printed when it changes)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(drain_opts)


def list_opts() -> dict:
    return {"DEFAULT": drain_opts}
