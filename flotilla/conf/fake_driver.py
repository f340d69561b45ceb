"""[fake_driver] options: the size of a host on the fake virt driver."""

from __future__ import annotations

from oslo_config import cfg

fake_driver_group = cfg.OptGroup(
    "fake_driver", title="Fake virt driver options",
    help="What a compute host on the in-memory fake driver ([compute] "
         "compute_driver = fake) reports as its size; for test clouds.")

fake_driver_opts = [
    cfg.IntOpt("vcpus", default=8, min=1,
               help="Virtual CPUs the fake host reports."),
    cfg.IntOpt("memory_mb", default=8192, min=1,
               help="Memory in MiB the fake host reports."),
    cfg.IntOpt("disk_gb", default=100, min=1,
               help="Disk in GiB the fake host reports."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(fake_driver_group)
    conf.register_opts(fake_driver_opts, group=fake_driver_group)


def list_opts() -> dict:
    return {fake_driver_group: fake_driver_opts}
