"""``flotilla server ...``: create, list, show, delete, lifecycle actions,
lock and unlock, console output.

Servers, flavors and images are named by name or id (the SDK's find_*
lookups, exact match). ``--wait`` polls until a stable state
(flotilla.cli.waiting) and fails on ERROR.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flotilla.cli import output, waiting

POWER_STATES = {0: "NOSTATE", 1: "Running", 3: "Paused", 4: "Shutdown",
                6: "Crashed", 7: "Suspended"}

LIST_COLUMNS = ["ID", "Name", "Status", "Task State", "Power State", "Image", "Flavor"]

# action name -> (SDK compute proxy method, status reached, help)
ACTIONS = {
    "start": ("start_server", "ACTIVE", "Start a stopped server"),
    "stop": ("stop_server", "SHUTOFF", "Stop (power off) a server"),
    "pause": ("pause_server", "PAUSED", "Pause a server (kept in memory)"),
    "unpause": ("unpause_server", "ACTIVE", "Unpause a paused server"),
    "suspend": ("suspend_server", "SUSPENDED", "Suspend a server (saved to disk)"),
    "resume": ("resume_server", "ACTIVE", "Resume a suspended server"),
}


def _image_name(server: Any) -> str:
    image = getattr(server, "image", None) or {}
    if isinstance(image, dict):
        return image.get("name") or image.get("id") or ""
    return str(getattr(image, "name", None) or getattr(image, "id", "") or "")


def _flavor_name(server: Any) -> str:
    flavor = getattr(server, "flavor", None) or {}
    if isinstance(flavor, dict):
        return flavor.get("original_name") or flavor.get("name") or flavor.get("id") or ""
    return str(getattr(flavor, "original_name", None) or getattr(flavor, "name", None)
               or getattr(flavor, "id", "") or "")


def _power_state(server: Any) -> str:
    value = getattr(server, "power_state", None)
    return POWER_STATES.get(value, "" if value is None else str(value))


def server_record(server: Any) -> output.Record:
    fields = {
        "id": server.id,
        "name": getattr(server, "name", None),
        "status": getattr(server, "status", None),
        "task_state": getattr(server, "task_state", None),
        "vm_state": getattr(server, "vm_state", None),
        "power_state": _power_state(server),
        "image": _image_name(server),
        "flavor": _flavor_name(server),
        "host": getattr(server, "compute_host", None),
        "key_name": getattr(server, "key_name", None),
        "locked": getattr(server, "is_locked", None),
        "locked_reason": getattr(server, "locked_reason", None),
        "availability_zone": getattr(server, "availability_zone", None),
        "addresses": getattr(server, "addresses", None),
        "metadata": getattr(server, "metadata", None),
        "project_id": getattr(server, "project_id", None),
        "user_id": getattr(server, "user_id", None),
        "created": getattr(server, "created_at", None),
        "updated": getattr(server, "updated_at", None),
    }
    if (getattr(server, "status", "") or "").upper() == "ERROR":
        fields["fault"] = waiting.fault_message(server)
    return output.Record(fields)


def _find(conn, name_or_id: str):
    return conn.compute.find_server(name_or_id, ignore_missing=False)


def _wait(conn, args, server_id: str, target: str, label: str):
    return waiting.wait_for_server(
        lambda: conn.compute.get_server(server_id), target, stream=sys.stderr,
        label=label, interval=args.poll_interval, timeout=args.wait_timeout)


def cmd_create(conn, args) -> output.Record:
    flavor = conn.compute.find_flavor(args.flavor, ignore_missing=False)
    image = conn.image.find_image(args.image, ignore_missing=False)
    attrs: dict[str, Any] = {"name": args.name, "flavor_id": flavor.id,
                             "image_id": image.id, "networks": args.nic}
    if args.property:
        attrs["metadata"] = dict(args.property)
    if args.availability_zone:
        attrs["availability_zone"] = args.availability_zone
    if args.group:
        attrs["scheduler_hints"] = {"group": args.group}
    if args.key_name:
        attrs["key_name"] = args.key_name
    server = conn.compute.create_server(**attrs)
    if args.wait:
        server = _wait(conn, args, server.id, "ACTIVE", "server %s" % args.name)
    else:
        server = conn.compute.get_server(server.id)
    return server_record(server)


def cmd_list(conn, args) -> output.Table:
    query: dict[str, Any] = {}
    if args.name:
        query["name"] = args.name
    if args.status:
        query["status"] = args.status
    if args.host:
        query["host"] = args.host
    rows = [[s.id, s.name, s.status, getattr(s, "task_state", None), _power_state(s),
             _image_name(s), _flavor_name(s)]
            for s in conn.compute.servers(details=True, all_projects=args.all_projects,
                                          **query)]
    return output.Table(LIST_COLUMNS, rows)


def cmd_show(conn, args) -> output.Record:
    return server_record(conn.compute.get_server(_find(conn, args.server).id))


def cmd_delete(conn, args) -> None:
    failed = 0
    for name in args.servers:
        server = _find(conn, name)
        conn.compute.delete_server(server)
        if args.wait:
            try:
                _wait(conn, args, server.id, waiting.DELETED, "server %s" % name)
            except waiting.WaitFailed as exc:
                print("flotilla: %s" % exc, file=sys.stderr)
                failed += 1
    if failed:
        raise waiting.WaitFailed("%d of %d servers failed to delete" % (failed, len(args.servers)))


def make_action(method: str, target: str):
    def cmd(conn, args) -> output.Record | None:
        server = _find(conn, args.server)
        getattr(conn.compute, method)(server)
        if args.wait:
            return server_record(_wait(conn, args, server.id, target,
                                       "server %s" % args.server))
        return None
    return cmd


def cmd_reboot(conn, args) -> output.Record | None:
    server = _find(conn, args.server)
    conn.compute.reboot_server(server, "HARD" if args.hard else "SOFT")
    if args.wait:
        return server_record(_wait(conn, args, server.id, "ACTIVE", "server %s" % args.server))
    return None


def cmd_lock(conn, args) -> None:
    conn.compute.lock_server(_find(conn, args.server), locked_reason=args.reason)


def cmd_unlock(conn, args) -> None:
    conn.compute.unlock_server(_find(conn, args.server))


def cmd_console(conn, args) -> None:
    server = _find(conn, args.server)
    result = conn.compute.get_server_console_output(server, length=args.lines)
    text = result.get("output", "") if isinstance(result, dict) else str(result)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    return key, value


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="Wait until the server reaches a stable state")


def register(subparsers) -> None:
    server = subparsers.add_parser("server", help="Servers (virtual machines)")
    sub = server.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="Create a server")
    p.add_argument("name")
    p.add_argument("--flavor", required=True, help="Flavor name or id")
    p.add_argument("--image", required=True, help="Image name or id")
    p.add_argument("--nic", choices=["none", "auto"], default="none",
                   help="Network: none (default) or auto")
    p.add_argument("--property", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="Metadata (repeatable)")
    p.add_argument("--availability-zone")
    p.add_argument("--group", help="Server group id (affinity policies)")
    p.add_argument("--key-name", help="Key pair to give the server")
    _add_wait(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("list", help="List servers")
    p.add_argument("--name")
    p.add_argument("--status")
    p.add_argument("--host", help="Only servers on this host (admin)")
    p.add_argument("--all-projects", action="store_true", help="Every project's (admin)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="Show a server")
    p.add_argument("server", help="Server name or id")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("delete", help="Delete servers")
    p.add_argument("servers", nargs="+", metavar="server")
    _add_wait(p)
    p.set_defaults(func=cmd_delete)

    for name, (method, target, help_text) in ACTIONS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("server", help="Server name or id")
        _add_wait(p)
        p.set_defaults(func=make_action(method, target))

    p = sub.add_parser("reboot", help="Reboot a server")
    p.add_argument("server", help="Server name or id")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--hard", action="store_true", help="Power cycle")
    kind.add_argument("--soft", action="store_true", help="ACPI reboot (default)")
    _add_wait(p)
    p.set_defaults(func=cmd_reboot)

    p = sub.add_parser("lock", help="Lock a server: its owner cannot change it until unlocked")
    p.add_argument("server", help="Server name or id")
    p.add_argument("--reason", help="Why (shown as locked_reason)")
    p.set_defaults(func=cmd_lock)
    p = sub.add_parser("unlock", help="Unlock a server")
    p.add_argument("server", help="Server name or id")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("console", help="Show a server's console output")
    p.add_argument("server", help="Server name or id")
    p.add_argument("--lines", type=int, help="Only the last N lines")
    p.set_defaults(func=cmd_console)
