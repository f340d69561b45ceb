"""``flotilla-manage role``: grant, revoke and list roles (admin, member,
reader) of users on projects."""

from __future__ import annotations

from flotilla.cmd.manage_service import _open, format_table
from flotilla.db import identity as identity_db

HELP = "roles: add USER PROJECT ROLE, remove USER PROJECT ROLE, list [--user U] [--project P]"


def add_parsers(actions) -> None:
    for name, func, text in (("add", add, "grant a role"),
                             ("remove", remove, "revoke a role")):
        parser = actions.add_parser(name, help=text)
        parser.add_argument("role_user", metavar="USER")
        parser.add_argument("role_project", metavar="PROJECT")
        parser.add_argument("role_name", metavar="ROLE",
                            choices=identity_db.ROLES)
        parser.set_defaults(func=func)
    parser = actions.add_parser("list", help="role assignments")
    parser.add_argument("--user", dest="role_user", default=None)
    parser.add_argument("--project", dest="role_project", default=None)
    parser.set_defaults(func=list_roles)


def add(conf) -> int:
    _open(conf)
    args = conf.category
    identity_db.role_add(args.role_user, args.role_project, args.role_name)
    print("Granted %s on %s to %s." % (args.role_name, args.role_project, args.role_user))
    return 0


def remove(conf) -> int:
    _open(conf)
    args = conf.category
    identity_db.role_remove(args.role_user, args.role_project, args.role_name)
    print("Revoked %s on %s from %s." % (args.role_name, args.role_project,
                                         args.role_user))
    return 0


def list_roles(conf) -> int:
    _open(conf)
    args = conf.category
    rows = identity_db.role_list(args.role_user, args.role_project)
    print(format_table(("User", "Project", "Role"), rows))
    return 0
