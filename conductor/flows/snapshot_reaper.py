"""Ends volume snapshots stuck in a transitional status (creating,
deleting) past their deadline: creating -> error, deleting ->
error_deleting (flotilla.states.SNAPSHOT_ON_TIMEOUT), each a
compare-and-swap so a volume service that finished meanwhile wins. Called
by the volume flow's reaper."""

from __future__ import annotations

import logging

from flotilla import exception
from flotilla import states as st
from flotilla.db import volume_snapshots as sdb

LOG = logging.getLogger(__name__)


def reap() -> int:
    """End every expired transitional snapshot status; how many."""
    ended = 0
    for snap in sdb.snapshot_get_expired():
        to = st.SNAPSHOT_ON_TIMEOUT[snap.status]
        try:
            sdb.snapshot_update(snap.id, {
                "status": to, "status_reason": "%s timed out (deadline %s)"
                % (snap.status, snap.status_deadline.isoformat())},
                expected_status=snap.status)
        except exception.FlotillaException:
            continue    # it moved on by itself
        LOG.warning("snapshot %s: %s timed out, now %s", snap.id, snap.status, to)
        ended += 1
    return ended
