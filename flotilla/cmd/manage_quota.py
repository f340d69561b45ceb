"""``flotilla-manage quota``: show and set a project's limits."""

from __future__ import annotations

from flotilla.cmd.manage_service import _open, format_table
from flotilla.db import identity as identity_db
from flotilla.db import quotas as quotas_db

HELP = "quotas: show PROJECT, set PROJECT RESOURCE LIMIT (-1 unlimited), reset PROJECT"


def add_parsers(actions) -> None:
    parser = actions.add_parser("show", help="limits and usage of a project")
    parser.add_argument("quota_project", metavar="PROJECT")
    parser.set_defaults(func=show)
    parser = actions.add_parser("set", help="override one limit")
    parser.add_argument("quota_project", metavar="PROJECT")
    parser.add_argument("quota_resource", metavar="RESOURCE", choices=quotas_db.RESOURCES)
    parser.add_argument("quota_limit", metavar="LIMIT", type=int)
    parser.set_defaults(func=set_limit)
    parser = actions.add_parser("reset", help="back to the [quota] defaults")
    parser.add_argument("quota_project", metavar="PROJECT")
    parser.set_defaults(func=reset)


def _project_id(ref: str) -> str:
    try:
        return identity_db.project_get(ref).id
    except identity_db.ProjectNotFound:
        return ref   # a project of noauth mode or an outside identity service


def show(conf) -> int:
    _open(conf)
    project = _project_id(conf.category.quota_project)
    defaults = {r: getattr(conf.quota, r) for r in quotas_db.RESOURCES}
    limits = quotas_db.get_limits(project, defaults)
    overrides = quotas_db.get_overrides(project)
    usage = quotas_db.get_usage(project)
    rows = [(r, limits[r], usage.get(r, "-"), "override" if r in overrides else "default")
            for r in quotas_db.RESOURCES]
    print(format_table(("Resource", "Limit", "In Use", "Source"), rows))
    return 0


def set_limit(conf) -> int:
    _open(conf)
    args = conf.category
    quotas_db.set_limit(_project_id(args.quota_project), args.quota_resource,
                        args.quota_limit)
    print("Set %s of %s to %d." % (args.quota_resource, args.quota_project,
                                   args.quota_limit))
    return 0


def reset(conf) -> int:
    _open(conf)
    count = quotas_db.delete_overrides(_project_id(conf.category.quota_project))
    print("Removed %d override(s) of %s." % (count, conf.category.quota_project))
    return 0
