"""[all] options: flotilla-all, every service in one process."""

from __future__ import annotations

from oslo_config import cfg

all_group = cfg.OptGroup(
    "all", title="flotilla-all options",
    help="flotilla-all runs the API, scheduler, conductor and one compute "
         "agent per host name in one process: the embedded default.")

all_opts = [
    cfg.ListOpt(
        "hosts",
        default=["host1", "host2"],
        help="Names of the compute hosts flotilla-all runs an agent for."),
    cfg.DictOpt(
        "connection_uris",
        default={},
        help="libvirt URI of each host as host:uri pairs (for example "
             "host1:qemu:///system). A host not listed uses libvirt's "
             "built-in test driver, test:///default: no daemon needed, "
             "guests exist only in memory."),
    cfg.StrOpt(
        "volume_host",
        help="Run a volume service (flotilla-volume) under this host name, "
             "with its storage pool on [volume] connection_uri. Unset: no "
             "volume service (the block-storage API then refuses to create "
             "volumes)."),
    cfg.StrOpt(
        "admin_password_file",
        default="$state_path/admin-password",
        help="Where flotilla-all keeps the password of the admin user it "
             "creates on first start (mode 0600)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(all_group)
    conf.register_opts(all_opts, group=all_group)


def list_opts() -> dict:
    return {all_group: all_opts}
