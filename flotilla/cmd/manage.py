"""``flotilla-manage``: the operator's command line.

    flotilla-manage [--config-file FILE] GROUP ACTION [ARGS]

Each command group is one module ``flotilla.cmd.manage_<group>`` listed in
:data:`GROUPS`; it provides ``HELP``, ``add_parsers(subparsers)`` (one
sub-parser per action, each with ``set_defaults(func=...)``) and the action
functions, which take the parsed ConfigOpts and return an exit status.
Adding a group (users, projects, flavors) is adding a module and a name.

Rules: a bad configuration prints one line and exits 2; any other failure
(database not synced, unknown service, database unreachable) prints one
line on stderr and exits 1, never a traceback; database URLs are only shown
with their password masked.
"""

from __future__ import annotations

import importlib
import sys

import sqlalchemy as sa
from oslo_config import cfg

from flotilla import conf as flotilla_conf
from flotilla import exception
from flotilla.conf import loader
from flotilla.db import api as db_api
from flotilla.log import mask_password

PROG = "flotilla-manage"

# Command groups, in help order; each is the module flotilla.cmd.manage_<name>.
GROUPS = ("db", "service", "host", "user", "project", "role", "flavor", "quota", "rpc")


def _add_command_parsers(subparsers) -> None:
    for name in GROUPS:
        module = importlib.import_module("flotilla.cmd.manage_" + name)
        parser = subparsers.add_parser(name, help=module.HELP,
                                       description=module.HELP)
        actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                        title="actions")
        actions.required = True
        module.add_parsers(actions)


def _category_opt() -> cfg.SubCommandOpt:
    return cfg.SubCommandOpt(
        "category", title="command groups", handler=_add_command_parsers,
        help="one of: %s" % ", ".join(GROUPS))


def fail(message: str) -> int:
    """Print one error line on stderr (passwords masked); return status 1."""
    print("%s: error: %s" % (PROG, mask_password(message)), file=sys.stderr)
    return 1


@loader.exit_on_error
def main(argv: list[str] | None = None,
         conf: cfg.ConfigOpts | None = None) -> int:
    """Run one command; return the process exit status."""
    if conf is None:
        # A private ConfigOpts: the CLI sub-command options must be
        # registered before parsing, and main() may run more than once
        # (tests) in one process.
        conf = cfg.ConfigOpts()
        flotilla_conf.register_all(conf)
    conf.register_cli_opt(_category_opt())
    loader.load(argv, prog=PROG, conf=conf)
    try:
        return conf.category.func(conf) or 0
    except exception.FlotillaException as exc:
        return fail(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return fail("database error: %s" % first)
    finally:
        db_api.dispose()


if __name__ == "__main__":
    sys.exit(main())
