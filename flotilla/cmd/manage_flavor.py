"""``flotilla-manage flavor``: create, list, delete flavors."""

from __future__ import annotations

from flotilla.cmd.manage_service import _open, format_table
from flotilla.db import api as db_api

HELP = ("flavors: create NAME --ram MB --vcpus N [--disk GB] [--ephemeral GB] "
        "[--id ID] [--private], list, delete ID")


def add_parsers(actions) -> None:
    parser = actions.add_parser("create", help="create a flavor")
    parser.add_argument("flavor_name", metavar="NAME")
    parser.add_argument("--ram", dest="flavor_ram", type=int, required=True,
                        help="MiB of memory")
    parser.add_argument("--vcpus", dest="flavor_vcpus", type=int, required=True)
    parser.add_argument("--disk", dest="flavor_disk", type=int, default=0,
                        help="GiB of root disk (0: the image's size)")
    parser.add_argument("--ephemeral", dest="flavor_ephemeral", type=int, default=0)
    parser.add_argument("--id", dest="flavor_id", default=None,
                        help="flavor id (default: the name)")
    parser.add_argument("--private", dest="flavor_private", action="store_true")
    parser.set_defaults(func=create)
    actions.add_parser("list", help="every live flavor").set_defaults(func=list_flavors)
    parser = actions.add_parser("delete", help="delete a flavor (servers keep theirs)")
    parser.add_argument("flavor_id", metavar="ID")
    parser.set_defaults(func=delete)


def create(conf) -> int:
    _open(conf)
    args = conf.category
    for value, name in ((args.flavor_ram, "--ram"), (args.flavor_vcpus, "--vcpus")):
        if value < 1:
            print("flotilla-manage: error: %s must be at least 1" % name)
            return 1
    if args.flavor_disk < 0 or args.flavor_ephemeral < 0:
        print("flotilla-manage: error: sizes cannot be negative")
        return 1
    flavor = db_api.flavor_create({
        "name": args.flavor_name, "flavorid": args.flavor_id or args.flavor_name,
        "memory_mb": args.flavor_ram, "vcpus": args.flavor_vcpus,
        "root_gb": args.flavor_disk, "ephemeral_gb": args.flavor_ephemeral,
        "is_public": not args.flavor_private})
    print("Created flavor %s (id %s)." % (flavor.name, flavor.flavorid))
    return 0


def list_flavors(conf) -> int:
    _open(conf)
    rows = [(f.flavorid, f.name, f.memory_mb, f.vcpus, f.root_gb, f.ephemeral_gb,
             "yes" if f.is_public else "no")
            for f in db_api.flavor_get_all(include_disabled=True)]
    print(format_table(("ID", "Name", "RAM", "VCPUs", "Disk", "Ephemeral", "Public"),
                       rows))
    return 0


def delete(conf) -> int:
    _open(conf)
    db_api.flavor_destroy(conf.category.flavor_id)
    print("Deleted flavor %s." % conf.category.flavor_id)
    return 0
