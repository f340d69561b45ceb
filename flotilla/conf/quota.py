"""[quota] options: default per-project limits."""

from __future__ import annotations

from oslo_config import cfg

quota_group = cfg.OptGroup(
    "quota", title="Quota options",
    help="Default limits of every project; the admin API's quota class "
         "'default' replaces them, flotilla-manage quota set and the quota "
         "API override them per project (and per user). -1 means unlimited.")

quota_opts = [
    cfg.IntOpt("instances", default=10, min=-1,
               help="Servers a project may have."),
    cfg.IntOpt("cores", default=20, min=-1,
               help="Virtual CPUs a project's servers may have in total."),
    cfg.IntOpt("ram", default=51200, min=-1,
               help="MiB of RAM a project's servers may have in total."),
    cfg.IntOpt("server_groups", default=10, min=-1,
               help="Server groups a project may have."),
    cfg.IntOpt("server_group_members", default=10, min=-1,
               help="Servers one server group may hold."),
    cfg.IntOpt("metadata_items", default=128, min=-1,
               help="Metadata keys one server may have."),
    cfg.IntOpt("key_pairs", default=100, min=-1,
               help="Key pairs each user may have (counted per user)."),
    cfg.IntOpt("volumes", default=10, min=-1,
               help="Block volumes a project may have."),
    cfg.IntOpt("gigabytes", default=1000, min=-1,
               help="GiB a project's volumes and volume snapshots may have in total."),
    cfg.IntOpt("snapshots", default=10, min=-1,
               help="Volume snapshots a project may have."),
]

RESOURCES = ("instances", "cores", "ram", "server_groups",
             "server_group_members", "metadata_items", "key_pairs")
# Block Storage quotas (the volume API's quota sets), apart from the compute ones.
VOLUME_RESOURCES = ("volumes", "gigabytes", "snapshots")


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(quota_group)
    conf.register_opts(quota_opts, group=quota_group)


def list_opts() -> dict:
    return {quota_group: quota_opts}
