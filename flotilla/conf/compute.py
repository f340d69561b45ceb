"""[compute] options: the compute agent and its virt driver."""

from __future__ import annotations

from oslo_config import cfg

compute_group = cfg.OptGroup(
    "compute", title="Compute agent options",
    help="The compute agent that runs the guests of one host.")

compute_opts = [
    cfg.StrOpt(
        "compute_driver",
        default="libvirt",
        help="Virt driver of the agent: 'libvirt', 'fake' (an in-memory "
             "hypervisor for test clouds, sized by [fake_driver]) or "
             "'package.module:ClassName' of a ComputeDriver."),
    cfg.IntOpt(
        "reboot_timeout",
        default=60,
        min=1,
        help="Seconds a soft reboot waits for the guest to shut down after "
             "the ACPI request before it falls back to a hard reboot."),
    cfg.IntOpt(
        "shutdown_timeout",
        default=60,
        min=0,
        help="Seconds a power off waits for the guest to shut down after "
             "the ACPI request before it destroys (pulls the plug on) the "
             "guest. 0 destroys at once."),
    cfg.IntOpt(
        "shutdown_retry_interval",
        default=10,
        min=1,
        help="Seconds between two ACPI shutdown requests while a power off "
             "waits; a guest that is still booting ignores the first ones."),
    cfg.IntOpt(
        "sync_power_state_interval",
        default=600,
        min=-1,
        help="Seconds between two periodic comparisons of the power state "
             "libvirt reports with the recorded one (catches what events "
             "miss); -1 disables it."),
    cfg.IntOpt(
        "resource_report_interval",
        default=60,
        min=1,
        help="Seconds between two reports of this host's resources "
             "(vCPUs, memory, disk) to the conductor."),
    cfg.IntOpt(
        "image_cache_manager_interval",
        default=2400,
        min=-1,
        help="Seconds between two runs of the image cache cleanup, which "
             "removes unused base images older than [libvirt] "
             "image_cache_max_age; -1 disables it."),
    cfg.IntOpt(
        "max_concurrent_builds",
        default=10,
        min=1,
        help="Most guests this agent spawns at the same time; further "
             "builds wait."),
    cfg.IntOpt(
        "max_concurrent_snapshots",
        default=5,
        min=1,
        help="Most snapshots (createImage, createBackup) this agent takes "
             "at the same time; further ones wait."),
    cfg.IntOpt(
        "max_concurrent_live_migrations",
        default=2,
        min=1,
        help="Most live migrations this agent runs as their source at the "
             "same time; further ones wait."),
    cfg.FloatOpt(
        "live_migration_progress_interval",
        default=2.0,
        min=0.2,
        help="Seconds between two reports of a running live migration's "
             "progress (memory and disk copied, remaining) to the conductor."),
    cfg.StrOpt(
        "snapshots_directory",
        default="$state_path/snapshots",
        help="Where the agent writes a snapshot's flattened copy before "
             "uploading it (one sub-directory per host; removed after the "
             "upload, and at start-up after a crash). Needs room for the "
             "largest root disk."),
    cfg.IntOpt(
        "image_upload_bandwidth",
        default=0,
        min=0,
        help="MiB/s a snapshot upload to the image API may use (0: no "
             "limit)."),
    cfg.IntOpt(
        "reserved_host_memory_mb",
        default=512,
        min=0,
        help="Memory in MiB kept for the host itself and not offered to "
             "guests."),
    cfg.IntOpt(
        "reserved_host_disk_gb",
        default=0,
        min=0,
        help="Disk in GiB of instances_path kept for the host and not "
             "offered to guests."),
    cfg.IntOpt(
        "reserved_host_cpus",
        default=0,
        min=0,
        help="Host CPUs not offered to guests."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(compute_group)
    conf.register_opts(compute_opts, group=compute_group)


def list_opts() -> dict:
    return {compute_group: compute_opts}
