"""[upgrade_levels] options: RPC version caps during a rolling upgrade."""

from __future__ import annotations

from oslo_config import cfg

upgrade_levels_group = cfg.OptGroup(
    "upgrade_levels", title="RPC version caps",
    help="During a rolling upgrade, new services must not send RPC messages "
         "older services cannot handle. Each option caps the version of one "
         "service's RPC API that this daemon sends: a version such as 1.1, "
         "'auto' (the lowest version reported by the running services of "
         "that kind, re-read every minute; needs database access, so on "
         "compute agents 'auto' means no cap: upgrade the conductor first), "
         "or unset (no cap). Upgrade order: conductor, scheduler, API, then "
         "compute and volume hosts.")

_VERSION = r"^(auto|(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8}))$"


def _level(name: str, service: str) -> cfg.StrOpt:
    return cfg.StrOpt(
        name, regex=_VERSION,
        help="Highest version of the %s RPC API to send: X.Y, 'auto' or unset."
             % service)


upgrade_levels_opts = [
    _level("compute", "compute agents'"),
    _level("conductor", "conductor's"),
    _level("scheduler", "scheduler's"),
    _level("volume", "volume services'"),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(upgrade_levels_group)
    conf.register_opts(upgrade_levels_opts, group=upgrade_levels_group)


def list_opts() -> dict:
    return {upgrade_levels_group: upgrade_levels_opts}
