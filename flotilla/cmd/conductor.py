"""flotilla-conductor: multi-step flows and the database writes of agents."""

from __future__ import annotations

import sys

from flotilla import binaries, service


def make_services(conf) -> list:
    from conductor.manager import ConductorManager
    from flotilla import rpc
    from flotilla.db import api as db
    from flotilla.db import schema
    db.configure(conf)
    schema.check_synced()
    # One transport for serving and for the flows' casts and calls.
    from flotilla.db.rpc_seen import DatabaseSeenStore
    # Competing consumers in several processes: duplicates are recognised
    # through the database (flotilla.rpc.replay).
    transport = rpc.get_transport(conf, seen_store=DatabaseSeenStore())
    return [service.Service(conf, binaries.CONDUCTOR, "conductor",
                            ConductorManager(conf, transport), transport=transport,
                            close_transport=True)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon(binaries.CONDUCTOR, make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
