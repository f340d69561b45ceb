"""``flotilla-manage project``: create, list, delete projects."""

from __future__ import annotations

from flotilla.cmd.manage_service import _open, format_table
from flotilla.db import identity as identity_db

HELP = ("projects: create NAME [--description D], list, delete NAME, "
        "disable NAME, enable NAME")


def add_parsers(actions) -> None:
    parser = actions.add_parser("create", help="create a project")
    parser.add_argument("project_name", metavar="NAME")
    parser.add_argument("--description", dest="project_description", default=None)
    parser.set_defaults(func=create)
    actions.add_parser("list", help="every project").set_defaults(func=list_projects)
    parser = actions.add_parser("delete", help="delete a project (its role "
                                "assignments and tokens go too)")
    parser.add_argument("project_name", metavar="NAME")
    parser.set_defaults(func=delete)
    for action, enabled in (("disable", False), ("enable", True)):
        parser = actions.add_parser(action, help="%s a project (its tokens stop "
                                    "or resume working at once)" % action)
        parser.add_argument("project_name", metavar="NAME")
        parser.set_defaults(func=lambda conf, _e=enabled: set_enabled(conf, _e))


def create(conf) -> int:
    _open(conf)
    args = conf.category
    project = identity_db.project_create(args.project_name, args.project_description)
    print("Created project %s (%s)." % (project.name, project.id))
    return 0


def list_projects(conf) -> int:
    _open(conf)
    rows = [(p.id, p.name, "yes" if p.enabled else "no", p.description or "")
            for p in identity_db.project_get_all()]
    print(format_table(("ID", "Name", "Enabled", "Description"), rows))
    return 0


def delete(conf) -> int:
    _open(conf)
    identity_db.project_delete(conf.category.project_name)
    print("Deleted project %s." % conf.category.project_name)
    return 0


def set_enabled(conf, enabled: bool) -> int:
    _open(conf)
    identity_db.project_set_enabled(conf.category.project_name, enabled)
    print("Project %s %s." % (conf.category.project_name,
                              "enabled" if enabled else "disabled"))
    return 0
