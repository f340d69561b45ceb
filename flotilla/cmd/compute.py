"""flotilla-compute: the agent that runs the guests of one host."""

from __future__ import annotations

import sys

from flotilla import service


def make_services(conf) -> list:
    from compute.manager import ComputeManager
    from compute.virt.loader import load_driver
    from conductor.rpcapi import ConductorAPI
    from flotilla import rpc

    transport = rpc.get_transport(conf)
    conductor = ConductorAPI(transport)
    manager = ComputeManager(conf, load_driver(conf), conductor)
    return [service.Service(conf, "flotilla-compute", "compute", manager,
                            transport=transport, heartbeat=conductor.report_heartbeat,
                            per_host=True,
                            close_transport=True)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon("flotilla-compute", make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
