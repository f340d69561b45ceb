"""flotilla-scheduler: picks hosts and claims their resources.

Any number may run at once (competing consumers of the ``scheduler``
queue); their claims are guarded by each host's generation.
"""

from __future__ import annotations

import sys

from flotilla import binaries, service


def make_services(conf) -> list:
    from flotilla import rpc
    from flotilla.db import api as db
    from flotilla.db import schema
    from flotilla.db.rpc_seen import DatabaseSeenStore
    from scheduler.manager import SchedulerManager
    db.configure(conf)
    schema.check_synced()
    # Competing consumers in several processes: duplicates are recognised
    # through the database (flotilla.rpc.replay).
    transport = rpc.get_transport(conf, seen_store=DatabaseSeenStore())
    return [service.Service(conf, binaries.SCHEDULER, "scheduler",
                            SchedulerManager(conf), transport=transport,
                            close_transport=True)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon(binaries.SCHEDULER, make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
