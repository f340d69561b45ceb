"""AggregateInstanceExtraSpecsFilter: a flavor's
``aggregate_instance_extra_specs:KEY = VALUE`` extra specs must match the
metadata of the host's aggregates (Nova's filter).

Rules: a host passes when, for every such key, one of its aggregates has
that metadata key with a matching value; a value may list alternatives as
``<in> a b`` or ``<or> a <or> b``, else it must be equal (``s==`` is
stripped). Unscoped keys are Flotilla's own extra specs (``network``) and
not matched against aggregates (Nova matches them too: a flavor with them
would then need aggregates on every host).
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest

SCOPE = "aggregate_instance_extra_specs:"


def _accepts(wanted: str, values: set[str]) -> bool:
    wanted = str(wanted).strip()
    if wanted.startswith("<in>"):
        return any(v in values for v in wanted[4:].split())
    if wanted.startswith("<or>"):
        return any(part.strip() in values for part in wanted.split("<or>") if part.strip())
    if wanted.startswith("s=="):
        wanted = wanted[3:].strip()
    return wanted in values


class AggregateInstanceExtraSpecsFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return any(key.startswith(SCOPE) for key in spec.flavor_extra_specs)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        aggregates = spec.host_aggregates.get(host.host, ())
        for key, wanted in spec.flavor_extra_specs.items():
            if not key.startswith(SCOPE):
                continue
            name = key[len(SCOPE):]
            values = {str(meta[name]) for _, meta in aggregates if name in meta}
            if not values or not _accepts(wanted, values):
                return False
        return True
