"""[scheduler] options: host selection and the build flow's retries."""

from __future__ import annotations

from oslo_config import cfg

scheduler_group = cfg.OptGroup(
    "scheduler", title="Scheduler options",
    help="The scheduler picks a host for each new instance: filters remove "
         "hosts that cannot take it, weighers rank the rest, and a resource "
         "claim on the chosen host is made before the answer is returned.")

DEFAULT_FILTERS = [
    "ComputeFilter", "RetryFilter", "AvailabilityZoneFilter", "RamFilter",
    "CoreFilter", "DiskFilter", "ImagePropertiesFilter",
    "ServerGroupAffinityFilter", "ServerGroupAntiAffinityFilter",
    "NumInstancesFilter", "SameHostFilter", "DifferentHostFilter",
    "AggregateInstanceExtraSpecsFilter",
]

scheduler_opts = [
    cfg.ListOpt(
        "enabled_filters",
        default=DEFAULT_FILTERS,
        help="Host filters run in this order, by name of their entry point "
             "in the flotilla.scheduler.filters group (an operator adds one "
             "by installing a package that declares that entry point)."),
    cfg.ListOpt(
        "weighers",
        default=["RAMWeigher", "CPUWeigher", "DiskWeigher"],
        help="Host weighers, by name of their entry point in the "
             "flotilla.scheduler.weighers group."),
    cfg.FloatOpt(
        "ram_weight_multiplier",
        default=1.0,
        help="Multiplier of the free-RAM weight: positive spreads instances "
             "over hosts, negative packs them onto the fullest host."),
    cfg.FloatOpt(
        "cpu_weight_multiplier",
        default=1.0,
        help="Multiplier of the free-vCPU weight (positive spreads, negative "
             "packs)."),
    cfg.FloatOpt(
        "disk_weight_multiplier",
        default=1.0,
        help="Multiplier of the free-disk weight (positive spreads, negative "
             "packs)."),
    cfg.IntOpt(
        "host_subset_size",
        default=1,
        min=1,
        help="The host is chosen at random among this many best-weighed "
             "hosts, so that concurrent schedulers rarely race for the same "
             "host (a lost race costs a retried claim, never an overcommit). "
             "1, the default, always takes the best, so servers spread (or "
             "pack) exactly as the weighers say."),
    cfg.IntOpt(
        "max_attempts",
        default=3,
        min=1,
        help="Hosts a build tries before the instance goes to ERROR: a spawn "
             "that fails on a host (or a host that cannot be reached) frees "
             "the claim and schedules again, excluding the hosts tried."),
    cfg.IntOpt(
        "max_instances_per_host",
        default=50,
        min=1,
        help="Most instances (allocations) one host may hold "
             "(NumInstancesFilter)."),
    cfg.IntOpt(
        "claim_retries",
        default=10,
        min=1,
        help="Times a claim on one host is retried after a generation "
             "conflict (another scheduler claimed there first) before the "
             "host is given up for the next best."),
    cfg.FloatOpt(
        "host_state_full_refresh",
        default=10.0,
        min=0.0,
        help="Seconds between two full reads of every compute node's state; "
             "in between, each request reads only the nodes that changed. "
             "0 reads everything at every request."),
    cfg.FloatOpt(
        "host_liveness_refresh",
        default=2.0,
        min=0.0,
        help="Seconds between two reads of the compute services' heartbeats "
             "and disabled flags (so disabling a service takes effect within "
             "this time)."),
    cfg.StrOpt(
        "default_availability_zone",
        default="nova",
        help="Availability zone of compute hosts that report none."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(scheduler_group)
    conf.register_opts(scheduler_opts, group=scheduler_group)


def list_opts() -> dict:
    return {scheduler_group: scheduler_opts}
