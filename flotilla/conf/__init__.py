"""Flotilla's configuration: one module per option group.

Every module in this package that defines ``register_opts(conf)`` and
``list_opts()`` is an option group; it is registered on :data:`CONF` on import
and listed for oslo-config-generator, so adding a group is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil

from oslo_config import cfg

CONF = cfg.CONF

_NOT_GROUPS = {"types", "opts", "loader"}


def group_modules() -> list:
    """The option group modules, in a stable order (DEFAULT first)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__)
                   if m.name not in _NOT_GROUPS)
    names.sort(key=lambda n: n != "default")
    return [importlib.import_module(f"{__name__}.{n}") for n in names]


def register_all(conf: cfg.ConfigOpts) -> None:
    for module in group_modules():
        module.register_opts(conf)


register_all(CONF)
