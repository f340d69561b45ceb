"""``flotilla``: the command line client of a Flotilla (or any OpenStack)
cloud, built on openstacksdk.

Credentials come as for the OpenStack tools: ``--os-cloud`` / ``OS_CLOUD``
naming a clouds.yaml entry, or ``OS_*`` environment variables and
``--os-*`` options (openstack.config parses them all).

Exit status: 0 on success; 1 for an error (one line on stderr, no
traceback unless ``--debug``), including a ``--wait`` that ends in ERROR
or times out; 2 for bad usage (argparse); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from flotilla.cli import keypairs, output, resources, servers, waiting

Connector = Callable[[argparse.Namespace], Any]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flotilla", description="Command line client of a Flotilla cloud.")
    parser.add_argument("-f", "--format", choices=output.FORMATS, default="table",
                        help="Output format (default: table)")
    parser.add_argument("--debug", action="store_true",
                        help="Show tracebacks and HTTP requests")
    parser.add_argument("--poll-interval", type=float, default=2.0,
                        help="Seconds between two polls of --wait (default 2)")
    parser.add_argument("--wait-timeout", type=float, default=600.0,
                        help="Seconds --wait waits at most (default 600)")
    import openstack.config
    # Adds --os-cloud, --os-auth-url, --os-username, ... with OS_* defaults.
    openstack.config.OpenStackConfig().register_argparse_arguments(parser, list(argv))
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    servers.register(subparsers)
    resources.register(subparsers)
    keypairs.register(subparsers)
    _accept_format_after_command(parser)
    return parser


def _accept_format_after_command(parser: argparse.ArgumentParser) -> None:
    """Let ``-f``/``--format`` also follow the command, as with the openstack
    CLI (``flotilla server list -f json``). SUPPRESS keeps the global value
    unless the option is given there."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    _accept_format_after_command(child)
                else:
                    child.add_argument("-f", "--format", choices=output.FORMATS,
                                       default=argparse.SUPPRESS,
                                       help="Output format (default: table)")


def connect(args: argparse.Namespace) -> Any:
    """An openstacksdk Connection from the parsed options and environment."""
    import openstack.config
    import openstack.connection
    region = openstack.config.OpenStackConfig(app_name="flotilla").get_one(argparse=args)
    return openstack.connection.Connection(config=region)


def one_line(exc: BaseException) -> str:
    """An exception as one readable line (SDK errors carry the server's
    message after their own summary)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None, connector: Connector = connect) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" not in argv:
        # Library deprecation notices are for developers, not CLI users.
        warnings.simplefilter("ignore")
    try:
        # Parsing reads clouds.yaml (for --os-cloud defaults): it can fail.
        parser = build_parser(argv)
    except Exception as exc:
        print("flotilla: error: %s" % one_line(exc), file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    # Libraries log warnings (failed discovery, retries) that would break
    # the one-line error rule; --debug shows everything instead.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format="%(levelname)s %(name)s %(message)s")
    try:
        conn = connector(args)
        result = args.func(conn, args)
        output.render(result, args.format, sys.stdout)
        return 0
    except KeyboardInterrupt:
        print("flotilla: interrupted", file=sys.stderr)
        return 130
    except waiting.WaitFailed as exc:
        # A wait that failed still shows where the server ended up.
        print("flotilla: error: %s" % exc, file=sys.stderr)
        return 1
    except Exception as exc:  # every failure is one line, never a traceback
        if args.debug:
            raise
        print("flotilla: error: %s" % one_line(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
