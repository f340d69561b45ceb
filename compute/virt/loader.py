"""Pick the virt driver named by ``[compute] compute_driver``."""

from __future__ import annotations

import importlib

from oslo_config import cfg

from compute.virt.driver import ComputeDriver

ALIASES = {
    "libvirt": "compute.virt.libvirt.driver:LibvirtDriver",
    "fake": "compute.virt.fake:FakeDriver",
}


def load_driver(conf: cfg.ConfigOpts) -> ComputeDriver:
    """A new driver instance (not yet initialised: call init_host)."""
    name = conf.compute.compute_driver
    target = ALIASES.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise ValueError("[compute] compute_driver must be libvirt, fake or "
                         "module:Class, not %r" % name)
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, ComputeDriver)):
        raise ValueError("%s is not a ComputeDriver" % target)
    return cls(conf)
