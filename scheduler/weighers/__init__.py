"""Host weighers: rank the hosts that passed the filters.

Rules:

* One class per module, subclass of :class:`BaseWeigher`, registered in the
  ``flotilla.scheduler.weighers`` entry point group and enabled by name in
  ``[scheduler] weighers``.
* Each weigher's raw values are normalised to 0..1 over the candidate hosts
  (min-max; all equal gives 0), multiplied by the weigher's multiplier and
  summed, so no weigher dominates by its unit (MB against vCPUs). A
  positive multiplier prefers the emptiest host (spread), a negative one
  the fullest (pack).
* :func:`weigh` returns the hosts best first.
"""

from __future__ import annotations

from oslo_config import cfg

from scheduler.filters import load_entry_points
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest

ENTRY_POINT_GROUP = "flotilla.scheduler.weighers"


class BaseWeigher:
    """Subclasses give :meth:`raw_weight` and :meth:`multiplier`."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def multiplier(self) -> float:
        return 1.0

    def raw_weight(self, host: HostState, spec: SchedulingRequest) -> float:
        raise NotImplementedError

    def raw_weights(self, hosts: list[HostState], spec: SchedulingRequest) -> list[float]:
        raw = self.raw_weight
        return [raw(h, spec) for h in hosts]


class WeightHandler:
    def __init__(self, conf: cfg.ConfigOpts, names: list[str] | None = None) -> None:
        names = list(conf.scheduler.weighers if names is None else names)
        self.weighers: list[BaseWeigher] = [
            cls(conf) for cls in load_entry_points(ENTRY_POINT_GROUP, names)]

    def weigh(self, hosts: list[HostState], spec: SchedulingRequest) -> list[HostState]:
        """``hosts`` ordered best first (ties keep their order)."""
        if len(hosts) <= 1:
            return list(hosts)
        totals = [0.0] * len(hosts)
        for weigher in self.weighers:
            multiplier = weigher.multiplier()
            if multiplier == 0:
                continue
            raw = weigher.raw_weights(hosts, spec)
            low, high = min(raw), max(raw)
            if high == low:
                continue
            scale = multiplier / (high - low)
            totals = [t + (r - low) * scale for t, r in zip(totals, raw, strict=True)]
        order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
        return [hosts[i] for i in order]
