"""The scheduler's RPC endpoint (topic ``scheduler``, shared queue).

Thin: it hands the request to :class:`scheduler.filter_scheduler.
FilterScheduler`. Run as many scheduler processes as you like: they are
competing consumers of one queue and their claims cannot overcommit a host.
"""

from __future__ import annotations

import logging

from oslo_config import cfg

from flotilla.context import RequestContext
from flotilla.objects import RequestSpec
from scheduler.filter_scheduler import FilterScheduler

LOG = logging.getLogger(__name__)


class SchedulerManager:
    RPC_API_VERSION = "1.1"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.driver = FilterScheduler(conf)

    def select_destinations(self, ctxt: RequestContext, request_spec: RequestSpec | dict,
                            instance_uuids: list[str],
                            excluded_hosts: list[str] | None = None) -> list[dict]:
        destinations = self.driver.select_destinations(RequestSpec.coerce(request_spec),
                                                       instance_uuids, excluded_hosts)
        LOG.info("placed %s", ", ".join("%s on %s" % (d["instance_uuid"], d["host"])
                                        for d in destinations))
        return destinations
