"""``flotilla keypair create|list|show|delete``: the user's ssh keys.

``create`` imports ``--public-key FILE``, or has the cloud generate the key
pair: its private key is shown once, or written to ``--private-key FILE``
(created with mode 0600, never overwritten).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flotilla.cli import output

LIST_COLUMNS = ["Name", "Fingerprint", "Type"]


def _record(keypair: Any) -> output.Record:
    return output.Record({"name": keypair.name, "fingerprint": keypair.fingerprint,
                          "type": getattr(keypair, "type", None),
                          "user_id": getattr(keypair, "user_id", None),
                          "created_at": getattr(keypair, "created_at", None),
                          "public_key": keypair.public_key})


def cmd_create(conn, args) -> output.Record:
    attrs: dict[str, Any] = {"name": args.name, "type": args.type}
    if args.public_key:
        with open(os.path.expanduser(args.public_key)) as source:
            attrs["public_key"] = source.read()
    elif args.private_key and os.path.exists(args.private_key):
        raise FileExistsError("%s exists: not overwriting a private key" % args.private_key)
    keypair = conn.compute.create_keypair(**attrs)
    private_key = getattr(keypair, "private_key", None)
    if private_key and args.private_key:
        fd = os.open(args.private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as target:
            target.write(private_key)
    elif private_key:
        sys.stdout.write(private_key if private_key.endswith("\n") else private_key + "\n")
        return None
    return _record(keypair)


def cmd_list(conn, args) -> output.Table:
    return output.Table(LIST_COLUMNS, [[k.name, k.fingerprint, getattr(k, "type", None)]
                                       for k in conn.compute.keypairs()])


def cmd_show(conn, args) -> output.Record:
    return _record(conn.compute.get_keypair(args.name))


def cmd_delete(conn, args) -> None:
    for name in args.names:
        conn.compute.delete_keypair(name, ignore_missing=False)


def register(subparsers) -> None:
    keypair = subparsers.add_parser("keypair", help="Key pairs (ssh keys) of your user")
    sub = keypair.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="Import a public key, or generate a key pair")
    p.add_argument("name")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--public-key", metavar="FILE", help="Public key to import")
    source.add_argument("--private-key", metavar="FILE",
                        help="Where to save the generated private key (default: print it)")
    p.add_argument("--type", choices=["ssh", "x509"], default="ssh")
    p.set_defaults(func=cmd_create)
    sub.add_parser("list", help="List your key pairs").set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="Show a key pair")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("delete", help="Delete key pairs")
    p.add_argument("names", nargs="+", metavar="name")
    p.set_defaults(func=cmd_delete)
