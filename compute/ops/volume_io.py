"""Online extend of an attached volume, and guests paused by a volume's I/O
errors (issue 11).

Extend (compute RPC 1.11, a call from conductor/flows/volume_extend.py):
the volume host serves the grown volume already; the driver makes the
guest's disk take the new size (ComputeDriver.extend_volume), under the
instance's lock.

Volume disks pause the guest on an I/O error instead of failing the
request (libvirt's ``error_policy='stop'``): while the volume host
re-exports a grown volume, or while its storage daemon is started again
after a crash, a request the guest makes pauses it. The driver reports such
a pause (VolumeIOErrorEvent); :class:`IOErrorResumer` then asks the driver
to resume the guest once its volumes answer again, trying again with a
growing delay while they do not. It only ever resumes a guest the
hypervisor paused for an I/O error (the driver checks the reason), whose
server is ACTIVE with no task: a server its user paused is PAUSED and stays
so. An agent that starts watches every paused guest of an ACTIVE server
(VolumeOps.resume_io_error_paused): its event may have come while no agent
listened.
"""

from __future__ import annotations

import logging
import threading
import time

from compute.lifecycle import Lifecycle
from compute.virt import events
from compute.virt.block_device import VolumeUnreachable
from flotilla import concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.objects import Instance

LOG = logging.getLogger(__name__)

#: Delays between attempts to resume (seconds): doubled up to the last.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
#: After this long a guest whose volume still does not answer is left
#: paused (logged); its next I/O error event starts again.
GIVE_UP_AFTER = 3600.0


class IOErrorResumer:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.host = lifecycle.host
        self._watching: set[str] = set()
        self._guard = threading.Lock()

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.VolumeIOErrorEvent):
            self.watch(event.instance_uuid, event.volume_id)

    def watch(self, instance_uuid: str, volume_id: str = "") -> bool:
        """Resume the guest once its volumes answer (one watcher per
        guest); whether a new watcher started."""
        if not self.driver.capabilities.supports_volume_io_error_resume:
            return False
        with self._guard:
            if instance_uuid in self._watching:
                return False
            self._watching.add(instance_uuid)
        LOG.warning("instance %s paused on an I/O error of volume %s: resuming it once "
                    "its volumes answer", instance_uuid, volume_id or "?")
        concurrency.spawn(self._run, instance_uuid)
        return True

    def _run(self, instance_uuid: str) -> None:
        try:
            delay, start = FIRST_DELAY, time.monotonic()
            while time.monotonic() - start < GIVE_UP_AFTER:
                if self.attempt(instance_uuid) is not None:
                    return
                concurrency.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
            LOG.error("instance %s: its volumes did not answer for %d s; it stays "
                      "paused", instance_uuid, GIVE_UP_AFTER)
        except Exception:
            LOG.exception("resuming instance %s after an I/O error failed", instance_uuid)
        finally:
            with self._guard:
                self._watching.discard(instance_uuid)

    def attempt(self, instance_uuid: str) -> bool | None:
        """One try: True resumed, False nothing to do (not paused by an I/O
        error, not this host's, or its server not ACTIVE), None not yet (a
        volume does not answer, or an operation holds the server)."""
        ctxt = get_admin_context()
        try:
            # Read under the instance's lock: a user's pause (which holds it)
            # is either over, and seen, or not begun.
            with self.lifecycle.locks.hold(instance_uuid):
                record = self.conductor.instance_get(ctxt, instance_uuid)
                if record.get("host") != self.host or record["vm_state"] != st.ACTIVE:
                    return False       # e.g. PAUSED by its user: never resumed here
                if record["task_state"] is not None:
                    return None        # its operation first (it may resume it itself)
                return self.driver.resume_after_io_error(Instance.from_record(record))
        except VolumeUnreachable as exc:
            LOG.info("instance %s stays paused: %s", instance_uuid, exc)
            return None
        except exception.InstanceNotFound:
            return False


def extend(lifecycle: Lifecycle, ctxt: RequestContext, instance_uuid: str,
           volume_id: str, new_size_bytes: int) -> None:
    record = lifecycle.conductor.instance_get(ctxt, instance_uuid)
    if record.get("host") != lifecycle.host:
        raise exception.InstanceNotFound(instance_uuid=instance_uuid)
    with lifecycle.locks.hold(instance_uuid):
        lifecycle.driver.extend_volume(Instance.from_record(record), volume_id,
                                       int(new_size_bytes))
    LOG.info("volume %s of %s extended to %d bytes in the guest", volume_id,
             instance_uuid, new_size_bytes)
