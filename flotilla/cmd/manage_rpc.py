"""``flotilla-manage rpc``: the RPC keys of compute hosts."""

from __future__ import annotations

import sys

from flotilla.rpc import signing

HELP = "RPC keys: host-key HOST (the [rpc] host_key for that compute host)"


def add_parsers(actions) -> None:
    parser = actions.add_parser(
        "host-key", help="print the [rpc] host_key of a compute host, derived from "
                         "this controller's [rpc] signing_key")
    parser.add_argument("key_host", metavar="HOST")
    parser.set_defaults(func=host_key)


def host_key(conf) -> int:
    deployment_key = conf.rpc.signing_key
    if not deployment_key:
        print("flotilla-manage: error: [rpc] signing_key is not set in this "
              "configuration: run this on a controller", file=sys.stderr)
        return 1
    print(signing.host_key(deployment_key, conf.category.key_host))
    return 0
