"""``flotilla-manage db``: create and upgrade the schema."""

from __future__ import annotations

from oslo_config import cfg

from flotilla.db import api as db_api
from flotilla.db import engine as db_engine
from flotilla.db import schema

HELP = "database schema: sync (create or upgrade to the current revision), version"


def add_parsers(actions) -> None:
    parser = actions.add_parser(
        "sync", help="create or upgrade the schema to the current revision "
                     "(safe to repeat)")
    parser.set_defaults(func=sync)
    parser = actions.add_parser(
        "version", help="print the schema revision of the database")
    parser.set_defaults(func=version)


def sync(conf: cfg.ConfigOpts) -> int:
    url = db_engine.mask_url(db_engine.build_url(conf))
    revision = schema.db_sync(conf)
    print("Database %s is at revision %s." % (url, revision))
    return 0


def version(conf: cfg.ConfigOpts) -> int:
    db_api.configure(conf)
    current, head = schema.current_revision(), schema.head_revision()
    if current == head:
        print(current)
    else:
        print("%s (this code needs %s: run flotilla-manage db sync)"
              % (current or "empty", head))
    return 0
