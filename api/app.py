"""The flotilla-api WSGI application (Falcon 4).

One app serves three APIs under one port: /compute (Nova v2.1 subset),
/identity (Keystone v3 subset) and /image (Glance v2 subset, mounted from
``api.image.routes.add_routes``). The same app runs
in the flotilla-api daemon and in-process in flotilla-all and the tests.

Request pipeline: request id and context -> routing -> authentication and
the route's policy rule (api.auth, api.policy) -> microversion (compute
routes) -> the resource, which validates its body before doing anything.
"""

from __future__ import annotations

import logging

import falcon

from api import auth, errors, microversion
from api.compute import (
    aggregates,
    extensions,
    external_events,
    flavors,
    hosts,
    hypervisors,
    images_proxy,
    instance_actions,
    keypairs,
    limits,
    migrations,
    networks,
    openapi,
    quota_sets,
    server_actions,
    server_groups,
    server_resources,
    servers,
    services,
    usage,
    versions,
    volume_attachments,
    zones,
)
from api.identity import admin as identity_admin
from api.identity import tokens
from api.identity import versions as identity_versions
from api.image import routes as image_routes
from api.state import APIState
from api.volume import routes as volume_routes

LOG = logging.getLogger(__name__)

COMPUTE = "/compute/v2.1"


class MicroversionMiddleware:
    """Parses the compute microversion and echoes it on compute responses."""

    def process_resource(self, req, resp, resource, params) -> None:
        if req.path.startswith(COMPUTE):
            req.context.version = microversion.from_headers(req.headers)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        version = req.context.get("version")
        if version is not None:
            for key, value in microversion.response_headers(version).items():
                resp.set_header(key, value)


def check_config(conf) -> None:
    """Refuse at start a configuration that would fail every boot later:
    agents download images through signed URLs as soon as an endpoint is
    configured, and nothing can sign them without a key."""
    from flotilla import images
    from flotilla.conf.loader import ConfigError
    if images.image_endpoint(conf) and not (conf.image.download_signing_key
                                            or conf.rpc.signing_key):
        raise ConfigError(
            "[image] download_signing_key is not set (nor [rpc] signing_key), "
            "but [api] public_endpoint / [image] public_endpoint is: compute "
            "agents could not be given signed image download URLs")


def create_app(conf, transport=None) -> falcon.App:
    """The API app for ``conf``; ``transport`` is the RPC transport to cast
    on (None: made from ``[DEFAULT] transport_url``)."""
    check_config(conf)
    if transport is None:
        from flotilla import rpc
        transport = rpc.get_transport(conf)
    if conf.api.auth_strategy == "noauth":
        LOG.warning("[api] auth_strategy = noauth: EVERY request is an admin, "
                    "without any authentication. Never use this outside local "
                    "development.")
    state = APIState(conf, transport)
    # The microversion is parsed before authentication so that every
    # compute response, a 401 included, carries it.
    app = falcon.App(middleware=[auth.ContextMiddleware(), MicroversionMiddleware(),
                                 auth.AuthMiddleware(conf)])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True
    errors.register(app)

    add = app.add_route
    # discovery
    add("/compute", versions.Versions(state))
    add(COMPUTE, versions.Version(state))
    add("/compute/v2", versions.LegacyVersion(state))
    add(COMPUTE + "/openapi.json", openapi.OpenAPI(state))
    add("/identity", identity_versions.Versions(state))
    add("/identity/v3", identity_versions.Version(state))
    # identity
    add("/identity/v3/auth/tokens", tokens.Tokens(state))
    add("/identity/v3/auth/catalog", tokens.Catalog(state))
    add("/identity/v3/auth/projects", tokens.Projects(state))
    identity_admin.add_routes(app, state)
    # servers
    add(COMPUTE + "/servers", servers.Servers(state))
    add(COMPUTE + "/servers/detail", servers.Servers(state, detail=True))
    add(COMPUTE + "/servers/{server_id}", servers.Server(state))
    add(COMPUTE + "/servers/{server_id}/action", server_actions.ServerAction(state))
    server_resources.add_routes(app, state, COMPUTE)
    add(COMPUTE + "/servers/{server_id}/os-volume_attachments",
        volume_attachments.VolumeAttachments(state))
    add(COMPUTE + "/servers/{server_id}/os-volume_attachments/{volume_id}",
        volume_attachments.VolumeAttachment(state))
    migrations.add_routes(app, state, COMPUTE)
    add(COMPUTE + "/servers/{server_id}/os-instance-actions",
        instance_actions.InstanceActions(state))
    add(COMPUTE + "/servers/{server_id}/os-instance-actions/{request_id}",
        instance_actions.InstanceAction(state))
    # flavors
    add(COMPUTE + "/flavors", flavors.Flavors(state))
    add(COMPUTE + "/flavors/detail", flavors.Flavors(state, detail=True))
    add(COMPUTE + "/flavors/{flavor_id}", flavors.Flavor(state))
    add(COMPUTE + "/flavors/{flavor_id}/os-extra_specs", flavors.ExtraSpecs(state))
    add(COMPUTE + "/flavors/{flavor_id}/os-flavor-access", flavors.FlavorAccess(state))
    add(COMPUTE + "/flavors/{flavor_id}/action", flavors.FlavorAction(state))
    add(COMPUTE + "/flavors/{flavor_id}/os-extra_specs/{key}", flavors.ExtraSpec(state))
    # server groups, zones, limits
    add(COMPUTE + "/os-server-groups", server_groups.ServerGroups(state))
    add(COMPUTE + "/os-server-groups/{group_id}", server_groups.ServerGroup(state))
    add(COMPUTE + "/os-availability-zone", zones.AvailabilityZones(state))
    add(COMPUTE + "/os-availability-zone/detail",
        zones.AvailabilityZones(state, detail=True))
    add(COMPUTE + "/limits", limits.Limits(state))
    # key pairs and quotas
    add(COMPUTE + "/os-keypairs", keypairs.Keypairs(state))
    add(COMPUTE + "/os-keypairs/{keypair_name}", keypairs.Keypair(state))
    add(COMPUTE + "/os-quota-sets/{project_id}", quota_sets.QuotaSet(state))
    add(COMPUTE + "/os-quota-sets/{project_id}/detail", quota_sets.QuotaSetDetail(state))
    add(COMPUTE + "/os-quota-sets/{project_id}/defaults",
        quota_sets.QuotaSetDefaults(state))
    add(COMPUTE + "/os-quota-class-sets/{class_name}", quota_sets.QuotaClassSet(state))
    # hosts and services (admin)
    add(COMPUTE + "/os-hypervisors", hypervisors.Hypervisors(state))
    add(COMPUTE + "/os-hypervisors/detail", hypervisors.Hypervisors(state, detail=True))
    add(COMPUTE + "/os-hypervisors/statistics", hypervisors.Statistics(state))
    add(COMPUTE + "/os-hypervisors/{hypervisor_id}", hypervisors.Hypervisor(state))
    add(COMPUTE + "/os-hypervisors/{hypervisor_id}/uptime", hypervisors.Uptime(state))
    add(COMPUTE + "/os-hypervisors/{hypervisor_id}/search", hypervisors.Search(state))
    add(COMPUTE + "/os-hypervisors/{hypervisor_id}/servers",
        hypervisors.Search(state, servers=True))
    add(COMPUTE + "/os-hosts", hosts.Hosts(state))
    add(COMPUTE + "/os-hosts/{host}", hosts.Host(state))
    for action in ("startup", "shutdown", "reboot"):
        add(COMPUTE + "/os-hosts/{host}/" + action, hosts.HostPowerAction(state, action))
    add(COMPUTE + "/os-simple-tenant-usage", usage.TenantUsages(state))
    add(COMPUTE + "/os-simple-tenant-usage/{tenant_id}", usage.TenantUsage(state))
    add(COMPUTE + "/os-instance_usage_audit_log", usage.AuditLogs(state))
    add(COMPUTE + "/os-instance_usage_audit_log/{before_timestamp}",
        usage.AuditLog(state))
    add(COMPUTE + "/extensions", extensions.Extensions(state))
    add(COMPUTE + "/extensions/{alias}", extensions.Extension(state))
    add(COMPUTE + "/images", images_proxy.Images(state))
    add(COMPUTE + "/images/detail", images_proxy.Images(state, detail=True))
    add(COMPUTE + "/images/{image_id}", images_proxy.Image(state))
    add(COMPUTE + "/images/{image_id}/metadata", images_proxy.ImageMetadata(state))
    add(COMPUTE + "/images/{image_id}/metadata/{key}",
        images_proxy.ImageMetadataItem(state))
    add(COMPUTE + "/os-server-external-events", external_events.ExternalEvents(state))
    add(COMPUTE + "/os-networks", networks.Networks(state))
    add(COMPUTE + "/os-networks/{network_id}", networks.Network(state))
    add(COMPUTE + "/os-services", services.Services(state))
    add(COMPUTE + "/os-services/{action}", services.Service(state))
    add(COMPUTE + "/os-aggregates", aggregates.Aggregates(state))
    add(COMPUTE + "/os-aggregates/{aggregate_id}", aggregates.Aggregate(state))
    add(COMPUTE + "/os-aggregates/{aggregate_id}/action", aggregates.AggregateAction(state))
    image_routes.add_routes(app, conf)
    volume_routes.add_routes(app, state)
    return app
