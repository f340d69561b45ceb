"""[conductor] options."""

from __future__ import annotations

from oslo_config import cfg

conductor_group = cfg.OptGroup(
    "conductor", title="Conductor options",
    help="The conductor runs multi-step flows and does the database writes "
         "compute agents ask for.")

conductor_opts = [
    cfg.DictOpt(
        "task_timeouts",
        default={},
        help="Seconds each task_state may last before the reaper ends it, "
             "as task:seconds pairs (for example spawning:900,migrating:3600); "
             "tasks not listed keep their built-in timeout."),
    cfg.IntOpt(
        "reaper_interval",
        default=30,
        min=1,
        help="Seconds between two runs of the reaper of stuck tasks."),
    cfg.IntOpt(
        "flow_poll_interval",
        default=20,
        min=1,
        help="Seconds between two looks at the flows waiting for a compute "
             "agent's report, in case the report was lost (the agent died "
             "after finishing, or runs an older version that sends none)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(conductor_group)
    conf.register_opts(conductor_opts, group=conductor_group)


def list_opts() -> dict:
    return {conductor_group: conductor_opts}
