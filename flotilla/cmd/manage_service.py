"""``flotilla-manage service``: list services, disable and enable them."""

from __future__ import annotations

from oslo_config import cfg

from flotilla.db import api as db_api
from flotilla.db import schema

HELP = "services: list, disable HOST BINARY [--reason R], enable HOST BINARY"

COLUMNS = ("Host", "Binary", "Topic", "Status", "State", "Disabled Reason",
           "Last Seen")


def add_parsers(actions) -> None:
    parser = actions.add_parser(
        "list", help="every service with its heartbeat status (up/down)")
    parser.set_defaults(func=list_services)
    for name, func, text in (("disable", disable, "stop scheduling to a service"),
                             ("enable", enable, "let a service take work again")):
        parser = actions.add_parser(name, help=text)
        # dests are prefixed: SubCommandAttr refuses names of config
        # options, and [DEFAULT] host is one.
        parser.add_argument("svc_host", metavar="HOST")
        parser.add_argument("svc_binary", metavar="BINARY",
                            help="e.g. flotilla-compute")
        if name == "disable":
            parser.add_argument("--reason", dest="svc_reason", default=None,
                                help="why (shown in service list)")
        parser.set_defaults(func=func)


def _open(conf: cfg.ConfigOpts) -> None:
    db_api.configure(conf)
    schema.check_synced()


def list_services(conf: cfg.ConfigOpts) -> int:
    _open(conf)
    down_time = conf.service_down_time
    rows = []
    for service in db_api.service_get_all():
        last = service.last_seen_at
        rows.append((
            service.host, service.binary, service.topic or "-",
            "up" if db_api.service_is_up(service, down_time) else "down",
            "disabled" if service.disabled else "enabled",
            service.disabled_reason or "-",
            last.strftime("%Y-%m-%d %H:%M:%S UTC") if last else "never"))
    print(format_table(COLUMNS, rows))
    return 0


def disable(conf: cfg.ConfigOpts) -> int:
    _open(conf)
    args = conf.category
    service = db_api.service_set_disabled(args.svc_host, args.svc_binary, True,
                                          args.svc_reason)
    print("Disabled %s on %s." % (service.binary, service.host))
    return 0


def enable(conf: cfg.ConfigOpts) -> int:
    _open(conf)
    args = conf.category
    service = db_api.service_set_disabled(args.svc_host, args.svc_binary, False)
    print("Enabled %s on %s." % (service.binary, service.host))
    return 0


def format_table(columns, rows) -> str:
    """A plain text table, columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (columns, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
