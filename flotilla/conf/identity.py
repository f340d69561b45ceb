"""[identity] options: the Keystone v3 subset served by flotilla-api."""

from __future__ import annotations

from oslo_config import cfg

identity_group = cfg.OptGroup(
    "identity", title="Identity options",
    help="Users, projects, roles and tokens (/identity/v3).")

identity_opts = [
    cfg.IntOpt(
        "token_ttl",
        default=3600,
        min=60,
        help="Seconds an issued token stays valid."),
    cfg.StrOpt(
        "region_name",
        default="RegionOne",
        help="Region named in the service catalog."),
    cfg.IntOpt(
        "scrypt_n",
        default=2 ** 14,
        min=2 ** 10,
        help="scrypt CPU/memory cost of new password hashes (a power of 2; "
             "memory used is 128 * 8 * N bytes). Existing hashes keep the "
             "cost they were made with."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(identity_group)
    conf.register_opts(identity_opts, group=identity_group)


def list_opts() -> dict:
    return {identity_group: identity_opts}
