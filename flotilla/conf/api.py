"""[api] options: the flotilla-api HTTP server."""

from __future__ import annotations

from oslo_config import cfg

api_group = cfg.OptGroup(
    "api", title="API options",
    help="flotilla-api: the compute, image and identity HTTP APIs.")

api_opts = [
    cfg.HostAddressOpt(
        "bind_host",
        default="0.0.0.0",
        help="Address the API listens on."),
    cfg.PortOpt(
        "bind_port",
        default=8774,
        help="TCP port the API listens on (every API is on this one port, "
             "under /compute, /image and /identity)."),
    cfg.IntOpt(
        "workers",
        default=8,
        min=1,
        max=256,
        help="Threads running requests (waitress's pool): requests are short "
             "and mostly wait on the database, so threads suffice. Reading a "
             "request never takes one: only complete requests reach them."),
    cfg.IntOpt(
        "client_header_timeout",
        default=10,
        min=1,
        help="Seconds a client has to send a request's headers, from their "
             "first byte; a slower one is disconnected."),
    cfg.IntOpt(
        "client_idle_timeout",
        default=60,
        min=1,
        help="Seconds a connection may send nothing (between requests, or "
             "in the middle of a body) before it is closed."),
    cfg.IntOpt(
        "max_connections",
        default=200,
        min=1,
        help="Most client connections open at once; further clients wait in "
             "the listen backlog."),
    cfg.StrOpt(
        "public_endpoint",
        help="Base URL clients reach the API at (for example "
             "https://cloud.example.com:8774), used in the service catalog "
             "and in links. Unset: derived from each request's Host."),
    cfg.StrOpt(
        "auth_strategy",
        default="keystone",
        choices=[("keystone", "tokens issued by /identity/v3 (the default)"),
                 ("noauth", "no authentication at all: every request is an "
                            "admin of project 'noauth'. Local development "
                            "only; a warning is logged at every start")],
        help="How requests are authenticated."),
    cfg.IntOpt(
        "max_request_body_size",
        default=114688,
        min=1024,
        help="Largest request body (bytes) accepted by the compute and "
             "identity APIs; larger ones get 413 before being read. Image "
             "uploads are not subject to it."),
    cfg.IntOpt(
        "max_limit",
        default=1000,
        min=1,
        help="Most items a list request returns in one page."),
    cfg.DictOpt(
        "policy_overrides",
        default={},
        help="Named policy rules given another rule than their default, e.g. "
             "os_compute_api:servers:create:zero_disk_flavor:member. Rules: "
             "admin, member, reader. Known names and defaults: "
             "os_compute_api:servers:create:zero_disk_flavor (admin)."),
    cfg.StrOpt(
        "default_availability_zone",
        default="nova",
        help="Availability zone of compute hosts that report none."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(api_group)
    conf.register_opts(api_opts, group=api_group)


def list_opts() -> dict:
    return {api_group: api_opts}
