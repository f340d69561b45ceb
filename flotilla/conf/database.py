"""[database] options."""

from __future__ import annotations

from oslo_config import cfg

from flotilla.conf import types

database_group = cfg.OptGroup(
    "database", title="Database options",
    help="Where Flotilla keeps the state of the cloud.")

database_opts = [
    cfg.Opt(
        "connection",
        type=types.DatabaseURL(),
        secret=True,
        help="SQLAlchemy URL of the database, for example "
             "postgresql+psycopg://flotilla:PASS@db/flotilla. Unset: an "
             "SQLite file flotilla.sqlite under [DEFAULT] state_path (the "
             "embedded default, one host only)."),
    cfg.IntOpt(
        "max_pool_size",
        default=10,
        min=1,
        help="Connections kept open to a PostgreSQL database per process."),
    cfg.BoolOpt(
        "connection_debug",
        default=False,
        help="Log every SQL statement (very verbose)."),
    cfg.IntOpt(
        "sqlite_busy_timeout",
        default=30,
        min=0,
        help="Seconds an SQLite writer waits for another process or thread "
             "holding the write lock before failing with 'database is "
             "locked'."),
    cfg.IntOpt(
        "connect_retry_timeout",
        default=30,
        min=0,
        help="Seconds a unit of work keeps trying to open its PostgreSQL "
             "connection while the database cannot be reached (a restart, a "
             "failover) before it fails; 0 fails at once. Only opening the "
             "connection is retried, never a statement, and never a refused "
             "login or a missing database."),
    cfg.IntOpt(
        "pool_timeout",
        default=30,
        min=1,
        help="Seconds to wait for a free connection from the PostgreSQL "
             "pool before failing."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(database_group)
    conf.register_opts(database_opts, group=database_group)


def list_opts() -> dict:
    return {database_group: database_opts}
