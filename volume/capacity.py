"""The volume service's capacity report (issue 11): what its backend has
of space, written into the database (flotilla.db.volume_capacity) at start
and every ``[volume] capacity_report_interval``, for volume placement
(flotilla.volume_placement) to read."""

from __future__ import annotations

import logging

from flotilla.db import volume_capacity as capdb

LOG = logging.getLogger(__name__)


def report(manager) -> capdb.VolumeCapacity | None:
    """Report ``manager``'s backend space for its host; None when the
    backend could not say (logged: the last report stays, and placement
    keeps using it)."""
    try:
        space = manager.backend.capacity()
    except Exception:
        LOG.exception("the volume backend could not report its space")
        return None
    provisioned = capdb.provisioned_gb([manager.host]).get(manager.host, 0)
    row = capdb.capacity_report(manager.host, space.total_bytes, space.free_bytes,
                                space.allocated_bytes, provisioned)
    LOG.debug("volume host %s: %d of %d bytes free, %d allocated, %d GiB provisioned",
              manager.host, space.free_bytes, space.total_bytes, space.allocated_bytes,
              provisioned)
    return row
