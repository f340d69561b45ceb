"""flotilla-volume: the volume service of one volume host (issue 11).

Consumes ``volume.<host>``; keeps volumes in a libvirt storage pool and
exports attached ones over NBD. It is part of the control plane (it holds
the deployment's RPC key and reads and writes the volumes table).
"""

from __future__ import annotations

import sys

from flotilla import binaries, service


def make_services(conf) -> list:
    from flotilla import rpc
    from flotilla.db import api as db
    from flotilla.db import schema
    from volume.manager import VolumeManager
    db.configure(conf)
    schema.check_synced()
    transport = rpc.get_transport(conf)
    return [service.Service(conf, binaries.VOLUME, "volume", VolumeManager(conf),
                            transport=transport, per_host=True, close_transport=True)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon(binaries.VOLUME, make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
