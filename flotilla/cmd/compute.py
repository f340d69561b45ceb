"""flotilla-compute: the agent that runs the guests of one host."""

from __future__ import annotations

import functools
import logging
import sys

from flotilla import binaries, service

LOG = logging.getLogger(__name__)


def make_services(conf) -> list:
    from compute.manager import ComputeManager
    from compute.virt.loader import load_driver
    from conductor.rpcapi import ConductorAPI
    from flotilla import rpc
    from flotilla.rpc.upgrade import version_cap

    if conf.rpc.signing_key:
        LOG.warning("[rpc] signing_key (the deployment's key) is set on this compute "
                    "host: it could speak for any host. Give it only its own [rpc] "
                    "host_key ('flotilla-manage rpc host-key %s' on a controller).",
                    conf.host)
    transport = rpc.get_transport(conf)
    conductor = ConductorAPI(transport, version_cap(conf, "conductor", has_database=False))
    manager = ComputeManager(conf, load_driver(conf), conductor)
    return [service.Service(conf, binaries.COMPUTE, "compute", manager,
                            transport=transport, heartbeat=functools.partial(
                                conductor.report_heartbeat,
                                timeout=service.heartbeat_timeout(conf)),
                            per_host=True,
                            close_transport=True)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon(binaries.COMPUTE, make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
