"""``flotilla-manage user``: create, list, delete users; set passwords.

A password comes from ``--password-file`` (first line), else the
environment variable named by ``--password-env`` (default
FLOTILLA_PASSWORD), else an interactive prompt (asked twice, not echoed).
It is never printed, logged or accepted on the command line, where other
users could read it in the process list.
"""

from __future__ import annotations

import getpass
import os
import sys

from flotilla.cmd.manage_service import _open, format_table
from flotilla.db import identity as identity_db

HELP = ("users: create NAME [--project P] [--password-file F], list, delete NAME, "
        "set-password NAME [--password-file F]")


def add_parsers(actions) -> None:
    parser = actions.add_parser("create", help="create a user")
    parser.add_argument("user_name", metavar="NAME")
    parser.add_argument("--project", dest="user_project", default=None,
                        help="default project (name or id)")
    _password_args(parser)
    parser.set_defaults(func=create)
    parser = actions.add_parser("list", help="every user")
    parser.set_defaults(func=list_users)
    parser = actions.add_parser("delete", help="delete a user and their tokens")
    parser.add_argument("user_name", metavar="NAME")
    parser.set_defaults(func=delete)
    for action, enabled in (("disable", False), ("enable", True)):
        parser = actions.add_parser(action, help="%s a user (its tokens stop or "
                                    "resume working at once)" % action)
        parser.add_argument("user_name", metavar="NAME")
        parser.set_defaults(func=lambda conf, _e=enabled: set_enabled(conf, _e))
    parser = actions.add_parser("set-password",
                                help="replace a password (revokes the user's tokens)")
    parser.add_argument("user_name", metavar="NAME")
    _password_args(parser)
    parser.set_defaults(func=set_password)


def _password_args(parser) -> None:
    parser.add_argument("--password-file", dest="password_file", default=None,
                        help="read the password from the first line of this file")
    parser.add_argument("--password-env", dest="password_env",
                        default="FLOTILLA_PASSWORD",
                        help="environment variable holding the password "
                             "(default FLOTILLA_PASSWORD)")


def read_password(args) -> str:
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.readline().rstrip("\r\n")
    elif os.environ.get(args.password_env):
        password = os.environ[args.password_env]
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return password


def _password_or_none(args) -> str | None:
    """The new password, or None after saying on stderr why there is none."""
    try:
        return read_password(args)
    except (OSError, ValueError) as exc:
        print("flotilla-manage: error: %s" % exc, file=sys.stderr)
        return None


def create(conf) -> int:
    _open(conf)
    args = conf.category
    password = _password_or_none(args)
    if password is None:
        return 1
    user = identity_db.user_create(args.user_name, password, args.user_project,
                                   scrypt_n=conf.identity.scrypt_n)
    print("Created user %s (%s)." % (user.name, user.id))
    return 0


def list_users(conf) -> int:
    _open(conf)
    projects = {p.id: p.name for p in identity_db.project_get_all()}
    rows = [(u.id, u.name, "yes" if u.enabled else "no",
             projects.get(u.default_project_id, "-")) for u in identity_db.user_get_all()]
    print(format_table(("ID", "Name", "Enabled", "Default Project"), rows))
    return 0


def delete(conf) -> int:
    _open(conf)
    identity_db.user_delete(conf.category.user_name)
    print("Deleted user %s." % conf.category.user_name)
    return 0


def set_enabled(conf, enabled: bool) -> int:
    _open(conf)
    identity_db.user_set_enabled(conf.category.user_name, enabled)
    print("User %s %s." % (conf.category.user_name,
                           "enabled" if enabled else "disabled"))
    return 0


def set_password(conf) -> int:
    _open(conf)
    args = conf.category
    password = _password_or_none(args)
    if password is None:
        return 1
    identity_db.user_set_password(args.user_name, password, conf.identity.scrypt_n)
    print("Password of %s changed; their tokens are revoked." % args.user_name)
    return 0
