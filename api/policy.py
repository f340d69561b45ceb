"""Who may call what: ONE table of rule per route.

Rules:

* ``public``: no token needed (discovery documents, token issue);
* ``optional``: a token is used when sent, else the request is anonymous
  (the handler decides, e.g. an image download authorised by a signed URL);
* ``token``: any valid token, scoped or not (token validation, revocation);
* ``reader``: a project-scoped token with role reader, member or admin;
* ``member``: role member or admin (anything that changes a project's
  resources);
* ``admin``: role admin (cloud-wide operations: flavors, hosts, services,
  quota changes);
* ``service``: role service or admin (other OpenStack services' calls:
  os-server-external-events).

Key pairs belong to users, not projects: reader suffices for every key
pair route, and the handler limits each user to its own (an admin may
name another). A project's quotas are readable by its readers; the
handler refuses another project's (403, as Nova's policy does).

Project isolation is not a rule here but a lookup rule in the handlers: a
non-admin's server lookups are filtered by its project, so another
project's server is a 404, exactly like a missing one.

A route missing from the table is refused (403) and logged: a new route
must be given a rule before anyone can call it. Routes under /image that
the image API does not declare (through a ``policy_rules`` dict on its
resource) default to reader for reads and member for writes.
"""

from __future__ import annotations

import logging

from api import errors
from flotilla.context import RequestContext

LOG = logging.getLogger(__name__)

PUBLIC, OPTIONAL, TOKEN = "public", "optional", "token"
READER, MEMBER, ADMIN = "reader", "member", "admin"
# Other OpenStack services calling in (role ``service``), or an admin.
SERVICE = "service"

_ROLES_FOR = {READER: {"reader", "member", "admin"},
              MEMBER: {"member", "admin"},
              ADMIN: {"admin"},
              SERVICE: {"service", "admin"}}

C = "/compute/v2.1"

# (method, Falcon URI template) -> rule.
RULES: dict[tuple[str, str], str] = {
    # discovery
    ("GET", "/"): PUBLIC,
    ("GET", "/compute"): PUBLIC,
    ("GET", C): PUBLIC,
    ("GET", "/compute/v2"): PUBLIC,
    ("GET", C + "/openapi.json"): PUBLIC,
    ("GET", "/identity"): PUBLIC,
    ("GET", "/identity/v3"): PUBLIC,
    ("GET", "/image"): PUBLIC,
    ("GET", "/image/versions"): PUBLIC,
    # identity
    ("POST", "/identity/v3/auth/tokens"): PUBLIC,
    ("GET", "/identity/v3/auth/tokens"): TOKEN,
    ("HEAD", "/identity/v3/auth/tokens"): TOKEN,
    ("DELETE", "/identity/v3/auth/tokens"): TOKEN,
    ("GET", "/identity/v3/auth/catalog"): TOKEN,
    ("GET", "/identity/v3/auth/projects"): TOKEN,
    # servers
    ("GET", C + "/servers"): READER,
    ("GET", C + "/servers/detail"): READER,
    ("POST", C + "/servers"): MEMBER,
    ("GET", C + "/servers/{server_id}"): READER,
    ("PUT", C + "/servers/{server_id}"): MEMBER,
    ("DELETE", C + "/servers/{server_id}"): MEMBER,
    ("POST", C + "/servers/{server_id}/action"): MEMBER,
    ("GET", C + "/servers/{server_id}/os-instance-actions"): READER,
    ("GET", C + "/servers/{server_id}/os-volume_attachments"): READER,
    ("POST", C + "/servers/{server_id}/os-volume_attachments"): MEMBER,
    ("GET", C + "/servers/{server_id}/os-volume_attachments/{volume_id}"): READER,
    ("DELETE", C + "/servers/{server_id}/os-volume_attachments/{volume_id}"): MEMBER,
    ("PUT", C + "/servers/{server_id}/os-volume_attachments/{volume_id}"): MEMBER,
    ("GET", C + "/servers/{server_id}/os-instance-actions/{request_id}"): READER,
    # flavors
    ("GET", C + "/flavors"): READER,
    ("GET", C + "/flavors/detail"): READER,
    ("GET", C + "/flavors/{flavor_id}"): READER,
    ("GET", C + "/flavors/{flavor_id}/os-extra_specs"): READER,
    ("POST", C + "/flavors"): ADMIN,
    ("PUT", C + "/flavors/{flavor_id}"): ADMIN,
    ("POST", C + "/flavors/{flavor_id}/os-extra_specs"): ADMIN,
    ("GET", C + "/flavors/{flavor_id}/os-extra_specs/{key}"): READER,
    ("PUT", C + "/flavors/{flavor_id}/os-extra_specs/{key}"): ADMIN,
    ("DELETE", C + "/flavors/{flavor_id}/os-extra_specs/{key}"): ADMIN,
    ("DELETE", C + "/flavors/{flavor_id}"): ADMIN,
    ("GET", C + "/flavors/{flavor_id}/os-flavor-access"): ADMIN,
    ("POST", C + "/flavors/{flavor_id}/action"): ADMIN,
    # server groups
    ("GET", C + "/os-server-groups"): READER,
    ("POST", C + "/os-server-groups"): MEMBER,
    ("GET", C + "/os-server-groups/{group_id}"): READER,
    ("DELETE", C + "/os-server-groups/{group_id}"): MEMBER,
    # zones and limits
    ("GET", C + "/os-availability-zone"): READER,
    ("GET", C + "/os-availability-zone/detail"): ADMIN,
    ("GET", C + "/limits"): READER,
    # key pairs (per user) and quotas
    ("GET", C + "/os-keypairs"): READER,
    ("POST", C + "/os-keypairs"): READER,
    ("GET", C + "/os-keypairs/{keypair_name}"): READER,
    ("DELETE", C + "/os-keypairs/{keypair_name}"): READER,
    ("GET", C + "/os-quota-sets/{project_id}"): READER,
    ("GET", C + "/os-quota-sets/{project_id}/detail"): READER,
    ("GET", C + "/os-quota-sets/{project_id}/defaults"): READER,
    ("PUT", C + "/os-quota-sets/{project_id}"): ADMIN,
    ("DELETE", C + "/os-quota-sets/{project_id}"): ADMIN,
    ("GET", C + "/os-quota-class-sets/{class_name}"): ADMIN,
    ("PUT", C + "/os-quota-class-sets/{class_name}"): ADMIN,
    # hosts and services
    ("GET", C + "/servers/{server_id}/migrations"): ADMIN,
    ("GET", C + "/servers/{server_id}/migrations/{migration_id}"): ADMIN,
    ("DELETE", C + "/servers/{server_id}/migrations/{migration_id}"): ADMIN,
    ("POST", C + "/servers/{server_id}/migrations/{migration_id}/action"): ADMIN,
    ("GET", C + "/os-migrations"): ADMIN,
    ("GET", C + "/os-hypervisors"): ADMIN,
    ("GET", C + "/os-hypervisors/detail"): ADMIN,
    ("GET", C + "/os-hypervisors/statistics"): ADMIN,
    ("GET", C + "/os-hypervisors/{hypervisor_id}"): ADMIN,
    ("GET", C + "/os-services"): ADMIN,
    ("PUT", C + "/os-services/{action}"): ADMIN,
    # a server's sub-resources (api.compute.server_resources; diagnostics
    # and password changes are further checked there)
    ("GET", C + "/servers/{server_id}/metadata"): READER,
    ("POST", C + "/servers/{server_id}/metadata"): MEMBER,
    ("PUT", C + "/servers/{server_id}/metadata"): MEMBER,
    ("GET", C + "/servers/{server_id}/metadata/{key}"): READER,
    ("PUT", C + "/servers/{server_id}/metadata/{key}"): MEMBER,
    ("DELETE", C + "/servers/{server_id}/metadata/{key}"): MEMBER,
    ("GET", C + "/servers/{server_id}/tags"): READER,
    ("PUT", C + "/servers/{server_id}/tags"): MEMBER,
    ("DELETE", C + "/servers/{server_id}/tags"): MEMBER,
    ("GET", C + "/servers/{server_id}/tags/{tag}"): READER,
    ("PUT", C + "/servers/{server_id}/tags/{tag}"): MEMBER,
    ("DELETE", C + "/servers/{server_id}/tags/{tag}"): MEMBER,
    ("GET", C + "/servers/{server_id}/ips"): READER,
    ("GET", C + "/servers/{server_id}/ips/{network}"): READER,
    ("GET", C + "/servers/{server_id}/diagnostics"): ADMIN,
    ("GET", C + "/servers/{server_id}/os-server-password"): READER,
    ("DELETE", C + "/servers/{server_id}/os-server-password"): MEMBER,
    # host aggregates
    ("GET", C + "/os-aggregates"): ADMIN,
    ("POST", C + "/os-aggregates"): ADMIN,
    ("GET", C + "/os-aggregates/{aggregate_id}"): ADMIN,
    ("PUT", C + "/os-aggregates/{aggregate_id}"): ADMIN,
    ("DELETE", C + "/os-aggregates/{aggregate_id}"): ADMIN,
    ("POST", C + "/os-aggregates/{aggregate_id}/action"): ADMIN,
    # hypervisors (more), hosts, usage, audit log
    ("GET", C + "/os-hypervisors/{hypervisor_id}/uptime"): ADMIN,
    ("GET", C + "/os-hypervisors/{hypervisor_id}/search"): ADMIN,
    ("GET", C + "/os-hypervisors/{hypervisor_id}/servers"): ADMIN,
    ("GET", C + "/os-hosts"): ADMIN,
    ("GET", C + "/os-hosts/{host}"): ADMIN,
    ("PUT", C + "/os-hosts/{host}"): ADMIN,
    ("GET", C + "/os-hosts/{host}/startup"): ADMIN,
    ("GET", C + "/os-hosts/{host}/shutdown"): ADMIN,
    ("GET", C + "/os-hosts/{host}/reboot"): ADMIN,
    # the list is admin-only, in the handler (403 as Nova's policy)
    ("GET", C + "/os-simple-tenant-usage"): READER,
    ("GET", C + "/os-simple-tenant-usage/{tenant_id}"): READER,
    ("GET", C + "/os-instance_usage_audit_log"): ADMIN,
    ("GET", C + "/os-instance_usage_audit_log/{before_timestamp}"): ADMIN,
    # legacy proxies and discovery
    ("GET", C + "/extensions"): READER,
    ("GET", C + "/extensions/{alias}"): READER,
    ("GET", C + "/images"): READER,
    ("GET", C + "/images/detail"): READER,
    ("GET", C + "/images/{image_id}"): READER,
    ("DELETE", C + "/images/{image_id}"): MEMBER,
    ("GET", C + "/images/{image_id}/metadata"): READER,
    ("POST", C + "/images/{image_id}/metadata"): MEMBER,
    ("PUT", C + "/images/{image_id}/metadata"): MEMBER,
    ("GET", C + "/images/{image_id}/metadata/{key}"): READER,
    ("PUT", C + "/images/{image_id}/metadata/{key}"): MEMBER,
    ("DELETE", C + "/images/{image_id}/metadata/{key}"): MEMBER,
    ("GET", C + "/os-networks"): READER,
    ("GET", C + "/os-networks/{network_id}"): READER,
    ("POST", C + "/os-server-external-events"): SERVICE,
}


# Identity administration: any valid token; the handlers decide who may
# (api.identity.admin: admin, system reader, the user itself).
for _template, _methods in (
        ("/domains", "GET POST"), ("/domains/{domain_id}", "GET"),
        ("/projects", "GET POST"), ("/projects/{project_id}", "GET PATCH DELETE"),
        ("/users", "GET POST"), ("/users/{user_id}", "GET PATCH DELETE"),
        ("/users/{user_id}/projects", "GET"), ("/roles", "GET POST"),
        ("/roles/{role_id}", "GET"),
        ("/projects/{project_id}/users/{user_id}/roles", "GET"),
        ("/projects/{project_id}/users/{user_id}/roles/{role_id}", "GET HEAD PUT DELETE"),
        ("/system/users/{user_id}/roles", "GET"),
        ("/system/users/{user_id}/roles/{role_id}", "GET HEAD PUT DELETE"),
        ("/role_assignments", "GET")):
    for _method in _methods.split():
        RULES[(_method, "/identity/v3" + _template)] = TOKEN
# Keystone authenticates a password change by the original password, not
# a token (a user whose password expired can still change it).
RULES[("POST", "/identity/v3/users/{user_id}/password")] = PUBLIC

#: Rules checked inside a handler for one aspect of a request, by Nova's
#: names; ``[api] policy_overrides`` may set another of the rules above.
NAMED_DEFAULTS: dict[str, str] = {
    # Booting a flavor with no root disk lets the disk grow to whatever the
    # image declares: admins only by default, as in Nova.
    "os_compute_api:servers:create:zero_disk_flavor": ADMIN,
}


def allowed(name: str, ctxt: RequestContext, conf=None) -> bool:
    """Whether ``ctxt`` passes the named rule (see NAMED_DEFAULTS)."""
    rule = NAMED_DEFAULTS[name]
    if conf is not None:
        rule = (conf.api.policy_overrides or {}).get(name, rule)
    if rule in (PUBLIC, OPTIONAL, TOKEN):
        return True
    return bool(_ROLES_FOR.get(rule, {"admin"}) & set(ctxt.roles or ()))


def rule_for(method: str, template: str | None, resource=None) -> str | None:
    """The rule of a route; None when no rule is known."""
    method = "GET" if method == "HEAD" and (method, template) not in RULES \
        else method
    declared = getattr(resource, "policy_rules", None)
    if declared and method in declared:
        return declared[method]
    rule = RULES.get((method, template or ""))
    if rule is None and template and (template == "/image"
                                      or template.startswith("/image/")):
        rule = READER if method == "GET" else MEMBER
    return rule


def enforce(rule: str, ctxt: RequestContext | None, what: str) -> None:
    """403 unless ``ctxt`` satisfies ``rule`` (authentication is checked
    before, by the auth middleware)."""
    if rule in (PUBLIC, OPTIONAL, TOKEN):
        return
    if ctxt is None or ctxt.project_id is None:
        raise errors.forbidden("A project-scoped token is required for %s." % what)
    if not _ROLES_FOR[rule] & set(ctxt.roles):
        raise errors.forbidden("Policy doesn't allow %s to be performed." % what)


def project_filter(ctxt: RequestContext) -> str | None:
    """The project a request's lookups are limited to (None: all, admin)."""
    return None if ctxt.is_admin else ctxt.project_id
