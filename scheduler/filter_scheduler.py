"""The filter scheduler: filter, weigh, pick among the best, claim.

Rules:

* Host states come from :class:`HostManager`'s cache, brought up to date
  once per request; every instance of the request is placed on those
  states, each claim updating its host in memory, so instance two sees
  instance one's claim. Requests in one scheduler process run one at a
  time (the cached states are shared); scale out with more processes.
* A request the cached view cannot place is decided again on a full read
  before NoValidHost is raised.
* The host is drawn at random among the ``[scheduler] host_subset_size``
  best: two schedulers deciding at the same moment rarely pick the same
  host, and when they do the loser finds out through the claim.
* A claim is :func:`flotilla.db.api.allocation_claim` on the generation the
  decision was made on. A generation conflict means another claim (or an
  inventory change) came first: the host is re-read with its group members
  and, if it still passes every filter, claimed again on the new
  generation, up to ``[scheduler] claim_retries`` times; otherwise the next
  best host is tried. Several schedulers can therefore never overcommit a
  host, nor put two anti-affinity members on one host.
* All or nothing: if one instance of the request cannot be placed, the
  claims already made for the others are freed and NoValidHost is raised
  with the reason (which filter eliminated how many hosts).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from flotilla import exception, objects
from flotilla.db import aggregates as agg_db
from flotilla.db import api as db
from flotilla.db import scheduling as sched_db
from scheduler.filters import FilterHandler, describe
from scheduler.host_manager import HostManager, HostState
from scheduler.scheduling_request import SchedulingRequest
from scheduler.weighers import WeightHandler

LOG = logging.getLogger(__name__)


class FilterScheduler:
    def __init__(self, conf: cfg.ConfigOpts, host_manager: HostManager | None = None) -> None:
        self.conf = conf
        self.host_manager = host_manager or HostManager(
            conf.service_down_time, full_refresh=conf.scheduler.host_state_full_refresh,
            liveness_refresh=conf.scheduler.host_liveness_refresh)
        self.filters = FilterHandler(conf)
        self.weighers = WeightHandler(conf)
        self._random = random.Random()
        self._lock = threading.Lock()

    def select_destinations(self, request_spec: objects.RequestSpec,
                            instance_uuids: Sequence[str],
                            excluded_hosts: Sequence[str] | None = None
                            ) -> list[dict[str, Any]]:
        """One claimed destination per instance uuid, in order:
        ``{"instance_uuid", "host", "nodename", "generation"}``."""
        if not instance_uuids:
            raise exception.Invalid(reason="select_destinations needs instance uuids")
        spec = SchedulingRequest.from_spec(request_spec, excluded_hosts)
        with self._lock:
            try:
                return self._select(spec, instance_uuids, fresh=False)
            except exception.NoValidHost:
                # The cache may not show capacity freed a moment ago.
                spec = SchedulingRequest.from_spec(request_spec, excluded_hosts)
                return self._select(spec, instance_uuids, fresh=True)

    def _select(self, spec: SchedulingRequest, instance_uuids: Sequence[str],
                fresh: bool) -> list[dict[str, Any]]:
        # Host states first, group members second: a member claimed on a host
        # after we read that host's generation makes our claim there conflict,
        # and the re-check then sees it (see _claim).
        hosts = self.host_manager.get_host_states(fresh=fresh)
        self._load_group(spec, instance_uuids)
        self._load_hints(spec)
        selected: list[dict[str, Any]] = []
        try:
            for uuid in instance_uuids:
                host = self._place_one(hosts, spec, uuid)
                selected.append({"instance_uuid": uuid, "host": host.host,
                                 "nodename": host.host, "generation": host.generation})
        except Exception:
            for done in selected:
                db.allocation_free(done["instance_uuid"])
            raise
        return selected

    def _load_group(self, spec: SchedulingRequest, instance_uuids: Sequence[str]) -> None:
        if spec.group is None:
            return
        found = sched_db.server_group_policy_and_hosts(spec.group, exclude=instance_uuids)
        if found is None:
            raise exception.NoValidHost(
                reason="Server group %s does not exist." % spec.group)
        spec.group_policy, spec.group_hosts = found

    @staticmethod
    def _load_hints(spec: SchedulingRequest) -> None:
        """The aggregates of every host, and the hosts of the servers the
        same_host / different_host hints name (a server not found, or not
        yet on a host, occupies none)."""
        spec.host_aggregates = agg_db.host_aggregates()
        for name in ("same_host", "different_host"):
            uuids = spec.hint_uuids(name)
            if uuids is None:
                continue
            hosts = set()
            for uuid in uuids:
                try:
                    host = db.instance_get(uuid).host
                except exception.NotFound:
                    continue
                if host:
                    hosts.add(host)
            setattr(spec, "same_hosts" if name == "same_host" else "different_hosts", hosts)

    def _place_one(self, hosts: list[HostState], spec: SchedulingRequest, uuid: str) -> HostState:
        passed, eliminations = self.filters.run(hosts, spec)
        if not passed:
            raise exception.NoValidHost(reason=describe(eliminations, len(hosts)))
        ordered = self.weighers.weigh(passed, spec)
        subset = self.conf.scheduler.host_subset_size
        lost = 0
        while ordered:
            host = ordered.pop(self._random.randrange(min(subset, len(ordered))))
            if self._claim(host, spec, uuid):
                return host
            lost += 1
        raise exception.NoValidHost(
            reason="%d host%s passed the filters but became unsuitable while "
                   "claiming (concurrent requests took the capacity). %s"
                   % (lost, "" if lost == 1 else "s", describe(eliminations, len(hosts))))

    def _claim(self, host: HostState, spec: SchedulingRequest, uuid: str) -> bool:
        """Claim on ``host`` for ``uuid``; True when the claim is made."""
        resources = spec.resources
        for _ in range(self.conf.scheduler.claim_retries):
            try:
                node = db.allocation_claim(host.host, uuid, resources, host.generation)
            except exception.ResourceProviderGenerationConflict:
                if not self._refresh(host, spec):
                    return False
                continue
            except exception.ComputeNodeNotFound:
                return False
            except exception.Conflict:
                # This consumer already holds resources there: a repeated
                # request; the existing claim stands.
                LOG.info("instance %s already has a claim on %s", uuid, host.host)
                return True
            host.vcpus_used = node.vcpus_used
            host.memory_mb_used = node.memory_mb_used
            host.disk_gb_used = node.disk_gb_used
            host.generation = node.generation
            host.num_instances += 1
            if spec.group_policy is not None:
                spec.group_hosts.add(host.host)
            return True
        LOG.warning("gave up claiming on %s after %d generation conflicts",
                    host.host, self.conf.scheduler.claim_retries)
        return False

    def _refresh(self, host: HostState, spec: SchedulingRequest) -> bool:
        """Re-read ``host`` (and the group) after a lost claim; True if it
        still passes every filter."""
        fresh = self.host_manager.refresh(host.host)
        if fresh is None:
            return False
        for field in dataclasses.fields(HostState):
            setattr(host, field.name, getattr(fresh, field.name))
        if spec.group is not None:
            found = sched_db.server_group_policy_and_hosts(spec.group)
            if found is not None:
                # Keep the hosts chosen earlier in this request as well.
                spec.group_hosts |= found[1]
        refused_by = self.filters.host_passes(host, spec)
        if refused_by is not None:
            LOG.debug("%s no longer passes %s after a lost claim", host.host, refused_by)
            return False
        return True
