"""Host filters: each removes the hosts that cannot take an instance.

Rules:

* One small class per module, subclass of :class:`BaseHostFilter`,
  registered as an entry point in the ``flotilla.scheduler.filters`` group
  and enabled by that name in ``[scheduler] enabled_filters`` (so an
  operator adds a filter by installing a package, without touching
  Flotilla).
* :meth:`BaseHostFilter.host_passes` decides for one host and has no side
  effects; :meth:`BaseHostFilter.run_filter_for_request` lets a filter with
  nothing to check for this request (no zone asked, no group) be skipped
  entirely, which matters at 10,000 hosts.
* :class:`FilterHandler` runs the filters in order and keeps, for each one
  that removed hosts, how many of how many: that is the NoValidHost reason.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata

from oslo_config import cfg

from flotilla import exception
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest

ENTRY_POINT_GROUP = "flotilla.scheduler.filters"


class BaseHostFilter:
    """A host filter; subclasses implement :meth:`host_passes`."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    @property
    def name(self) -> str:
        return type(self).__name__

    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        """False when this request gives the filter nothing to check."""
        return True

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: list[HostState], spec: SchedulingRequest) -> list[HostState]:
        passes = self.host_passes
        return [h for h in hosts if passes(h, spec)]


@dataclasses.dataclass
class Elimination:
    filter_name: str
    removed: int
    of: int


def load_entry_points(group: str, names: list[str]) -> list[type]:
    """The classes registered under ``names`` in entry point ``group``,
    in that order; an unknown name is a configuration error naming it."""
    available = {ep.name: ep for ep in metadata.entry_points(group=group)}
    classes = []
    for name in names:
        if name not in available:
            raise exception.Invalid(
                reason="%s is not a known %s entry point (known: %s)"
                % (name, group, ", ".join(sorted(available)) or "none"))
        classes.append(available[name].load())
    return classes


class FilterHandler:
    """Runs the enabled filters, recording what each eliminated."""

    def __init__(self, conf: cfg.ConfigOpts, names: list[str] | None = None) -> None:
        names = list(conf.scheduler.enabled_filters if names is None else names)
        self.filters: list[BaseHostFilter] = [
            cls(conf) for cls in load_entry_points(ENTRY_POINT_GROUP, names)]

    def run(self, hosts: list[HostState], spec: SchedulingRequest
            ) -> tuple[list[HostState], list[Elimination]]:
        eliminations = []
        for flt in self.filters:
            if not hosts:
                break
            if not flt.run_filter_for_request(spec):
                continue
            before = len(hosts)
            hosts = flt.filter_all(hosts, spec)
            if len(hosts) < before:
                eliminations.append(Elimination(flt.name, before - len(hosts), before))
        return hosts, eliminations

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> str | None:
        """None if ``host`` passes every filter, else the first refusing
        filter's name."""
        for flt in self.filters:
            if flt.run_filter_for_request(spec) and not flt.host_passes(host, spec):
                return flt.name
        return None


def describe(eliminations: list[Elimination], total: int) -> str:
    """'RamFilter eliminated 3 of 5 hosts; ...' (the tenant-visible why)."""
    if total == 0:
        return "There are no compute hosts."
    if not eliminations:
        return "All %d hosts passed the filters." % total
    return "; ".join("%s eliminated %d of %d host%s"
                     % (e.filter_name, e.removed, e.of, "" if e.of == 1 else "s")
                     for e in eliminations) + "."
