"""Keeping the conductor's view of this host's guests true.

Three sources of drift, one set of rules:

* start-up (:meth:`Reconciler.init_host`): the agent may have died mid-way;
  domains whose instance is deleted or unknown are destroyed, instances
  whose domain vanished go to ERROR, files of instances that are neither
  this host's nor coming to it are removed, an interrupted spawn ends ACTIVE (the
  guest runs) or ERROR (it does not), an interrupted delete is finished,
  an interrupted snapshot has its leftovers removed (block job, temporary
  files) and is reported failed to its flow, which removes the image and
  clears the task (the guest was never paused: its state is what it was),
  an interrupted rebuild is reported too, a live migration in progress is
  left to its flow on both hosts (the incoming domain is not an orphan, the
  source's guest that left has not vanished) but for its job, which the
  hypervisor ran on: the source watches what is left of it and reports how
  it ended (compute/ops/live_migration.py), a resize's disk copy (which
  ran in this agent and died with it) is reported failed so its flow
  reverts at once, and any other interrupted task is cleared with the
  reason recorded;
* lifecycle events from the driver, as they happen;
* a periodic sync that catches what events missed.

A guest that stopped by itself (shut down from inside, crashed) moves its
instance from ACTIVE to STOPPED, as Nova does; otherwise only power_state
follows the hypervisor: vm_state is the user's intent.
"""

from __future__ import annotations

import collections
import logging

from compute.lifecycle import Lifecycle
from compute.virt import events, power_state
from flotilla import concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.objects import Instance

LOG = logging.getLogger(__name__)

_RESIZE_TASKS = (*st.operation("resize").task_states, st.RESIZE_CONFIRMING,
                 st.RESIZE_REVERTING)

_OFF = (power_state.SHUTDOWN, power_state.CRASHED)
_VM_STATE_FOR_POWER = {
    power_state.RUNNING: st.ACTIVE,
    power_state.PAUSED: st.PAUSED,
    power_state.SUSPENDED: st.SUSPENDED,
    power_state.SHUTDOWN: st.STOPPED,
    power_state.CRASHED: st.STOPPED,
}


SNAPSHOT_TASKS = st.operation("snapshot").task_states
REBUILD_TASKS = st.operation("rebuild").task_states


class Reconciler:
    def __init__(self, lifecycle: Lifecycle, snapshots=None, rebuilds=None,
                 live_migrations=None) -> None:
        """``snapshots``, ``rebuilds`` and ``live_migrations`` (compute.ops)
        repair what a crash left of their operations."""
        self.lifecycle = lifecycle
        self.snapshots = snapshots
        self.rebuilds = rebuilds
        self.live_migrations = live_migrations
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.host = lifecycle.host
        # Reports start-up found to make once the agent consumes its queue
        # (after_start): their handling calls back into this agent.
        self._deferred: list[tuple] = []
        self._events: collections.deque[events.Event] = collections.deque()
        self._events_ready = concurrency.Event()
        self._stopping = False
        self._event_worker = None
        # Who waits for DeviceRemovedEvents (set by the volume operations).
        self.device_removed_handler = None

    # --- start-up ---------------------------------------------------------------

    def init_host(self) -> None:
        ctxt = get_admin_context()
        if self.snapshots is not None:
            self.snapshots.clean_directory()
        records = {r["uuid"]: r for r in
                   self.conductor.instance_get_all_by_host(ctxt, self.host)}
        domains = set(self.driver.list_instances())
        for uuid in sorted(domains - set(records)):
            if self._incoming(ctxt, uuid):
                LOG.info("instance %s is migrating here: its domain is left to the "
                         "migration", uuid)
                continue
            LOG.warning("destroying domain of instance %s: deleted or unknown "
                        "to the cloud", uuid)
            try:
                self.driver.destroy(Instance(uuid=uuid))
            except Exception:
                LOG.exception("could not destroy orphan domain %s", uuid)
        # Files without a guest: what a migration or evacuation that ended
        # while this agent was down left here (its rollback never came).
        for uuid in sorted(set(self.driver.list_instance_files()) - domains - set(records)):
            if self._incoming(ctxt, uuid):
                continue
            LOG.warning("removing the files of instance %s: it is not on this host",
                        uuid)
            try:
                self.driver.destroy(Instance(uuid=uuid))
            except Exception:
                LOG.exception("could not remove the files of instance %s", uuid)
        for uuid, record in records.items():
            try:
                self._repair(ctxt, record, uuid in domains)
            except exception.InstanceStateConflict as exc:
                LOG.info("instance %s changed while being repaired: %s", uuid, exc)
            except Exception:
                LOG.exception("could not repair instance %s", uuid)

    def _incoming(self, ctxt: RequestContext, uuid: str) -> bool:
        """A live migration in progress brings instance ``uuid`` to this
        host (the conductor lets a migration's hosts read it, no others)."""
        try:
            record = self.conductor.instance_get(ctxt, uuid)
        except (exception.InstanceNotFound, exception.Forbidden):
            return False
        if record.get("host") == self.host:
            return False
        # A resize keeps a copy on its source until confirmed or reverted,
        # and brings one here while it runs.
        return record.get("task_state") in (st.MIGRATING, *_RESIZE_TASKS) \
            or record.get("vm_state") == st.RESIZED

    def _repair(self, ctxt: RequestContext, record: dict, has_domain: bool) -> None:
        uuid, task = record["uuid"], record["task_state"]
        if task == st.MIGRATING:
            # The job runs in libvirtd, not here, and may have moved the
            # guest away: neither vanished nor interrupted. The source watches
            # what is left of its job and reports it; otherwise the flow
            # finds where the guest runs (its poll, or the reaper's cleanup).
            if self.live_migrations is not None \
                    and self.live_migrations.recover(ctxt, record):
                return
            LOG.info("instance %s is live-migrating: left to its flow", uuid)
            return
        if task == st.RESIZE_MIGRATING and self._resize_copy_lost(ctxt, record):
            return
        if task == st.DELETING:
            LOG.info("finishing the interrupted delete of instance %s", uuid)
            self.conductor.instance_update(ctxt, uuid, {"task_state": None},
                                           expected={"task_state": st.DELETING})
            self.lifecycle.terminate(ctxt, uuid)
            return
        power = self._power(record) if has_domain else power_state.NOSTATE
        if task in SNAPSHOT_TASKS and self.snapshots is not None:
            LOG.warning("instance %s: its snapshot (%s) was interrupted by an agent "
                        "restart", uuid, task)
            if power != record["power_state"]:
                self.conductor.instance_update(ctxt, uuid, {"power_state": power},
                                               expected={"task_state": task})
            self.snapshots.recover(ctxt, record)
            if not has_domain:
                record = self.conductor.instance_get(ctxt, uuid)
                if record["task_state"] is None:
                    self._fail(ctxt, record,
                               "the guest's domain vanished from the hypervisor")
            return
        if task == st.SPAWNING or (record["vm_state"] == st.BUILDING and task is None):
            if power == power_state.RUNNING:
                self._set(ctxt, record, {"vm_state": st.ACTIVE, "task_state": None,
                                         "power_state": power},
                          "spawn finished while the agent was down")
            else:
                # Idempotent: also removes a half-made instance directory.
                self.driver.destroy(Instance.from_record(record))
                self._fail(ctxt, record, "the compute agent restarted during the spawn "
                           "and the guest did not start")
            return
        if not has_domain and task in _RESIZE_TASKS:
            # A resize to this same host between its original stepping aside
            # (kept as <uuid>_resize, undefined) and the new definition, or a
            # revert that destroyed the guest here before the server moves
            # back: not vanished. Its flow, or the reaper at the task's
            # deadline, finishes or reverts it.
            LOG.info("instance %s is in resize task %s without a domain here: left to "
                     "its flow", uuid, task)
            return
        if not has_domain:
            if record["vm_state"] in (st.BUILDING, st.ERROR) and task is None:
                return
            self._fail(ctxt, record, "the guest's domain vanished from the hypervisor")
            if task in REBUILD_TASKS and self.rebuilds is not None:
                self.rebuilds.interrupted(ctxt, record)
            return
        values = {"power_state": power}
        reason = None
        if task is not None:
            values["task_state"] = None
            values["vm_state"] = _VM_STATE_FOR_POWER.get(power, record["vm_state"])
            reason = ("%s was interrupted by a compute agent restart; the guest is %s"
                      % (task, power_state.name(power)))
        elif record["vm_state"] == st.ACTIVE and power in _OFF:
            values["vm_state"] = st.STOPPED
        if values.get("vm_state", record["vm_state"]) != record["vm_state"] \
                or power != record["power_state"] or reason:
            self._set(ctxt, record, values, reason)
        if task in REBUILD_TASKS and self.rebuilds is not None:
            self.rebuilds.interrupted(ctxt, record)

    def _resize_copy_lost(self, ctxt: RequestContext, record: dict) -> bool:
        """An instance of this host in task ``resize_migrating`` whose
        migration is sending its disk from here: the copy ran in this agent
        (compute/ops/resize.py) and died with it, so report it failed as the
        copy would have; the flow then reverts (the destination drops what
        arrived, the guest boots here again) instead of the task being
        cleared under it, which left the migration stuck and its claim and
        the partial copy behind. The report goes once this agent serves
        (the revert calls back here). A copy whose cast was still queued
        finds the task over and its report is ignored. False when there is
        no such copy (left to the other rules)."""
        uuid = record["uuid"]
        try:
            migration = self.conductor.migration_get_in_progress(ctxt, uuid)
        except exception.FlotillaException as exc:
            LOG.info("migration of %s not known (%s): left to its flow", uuid, exc)
            return False
        if not migration or migration.get("source_host") != self.host \
                or migration.get("status") != "migrating" \
                or migration.get("migration_type") not in ("migration", "resize"):
            return False
        LOG.warning("instance %s: the copy of its disk to %s was interrupted by this "
                    "agent's restart; reporting it failed", uuid, migration.get("dest_host"))
        self._deferred.append((self._report_lost_copy, ctxt, uuid, migration["uuid"]))
        return True

    def after_start(self) -> None:
        """Make the reports start-up deferred (see _deferred), each in its
        own thread: the conductor's handling calls back into this agent."""
        deferred, self._deferred = self._deferred, []
        for call, *args in deferred:
            concurrency.spawn(call, *args)

    def _report_lost_copy(self, ctxt: RequestContext, uuid: str, migration_uuid: str) -> None:
        try:
            self.conductor.resize_disk_done(
                ctxt, uuid, migration_uuid, self.host, migrate_data=None,
                error="the disk copy was interrupted by a restart of the source's "
                      "compute agent",
                message="Sending the server's disk to its new host failed.")
        except Exception as exc:
            # The reaper ends the resize at its deadline (and reverts it).
            LOG.warning("could not report the lost disk copy of %s: %s", uuid, exc)

    def _set(self, ctxt, record: dict, values: dict, reason: str | None) -> None:
        # The fault first, as Nova records it: whoever sees the new state
        # (an ERROR) finds the reason beside it.
        if reason:
            LOG.warning("instance %s: %s", record["uuid"], reason)
            self.lifecycle.reporter.fault(ctxt, record["uuid"], reason)
        self.conductor.instance_update(
            ctxt, record["uuid"], values,
            expected={"vm_state": record["vm_state"], "task_state": record["task_state"]})

    def _fail(self, ctxt, record: dict, reason: str) -> None:
        self._set(ctxt, record, {"vm_state": st.ERROR, "task_state": None,
                                 "power_state": power_state.NOSTATE}, reason)

    def _power(self, record: dict) -> int:
        try:
            return self.driver.get_info(Instance.from_record(record)).power_state
        except exception.InstanceNotFound:
            return power_state.NOSTATE

    # --- periodic sync --------------------------------------------------------

    def sync_power_states(self) -> None:
        ctxt = get_admin_context()
        domains = set(self.driver.list_instances())
        for record in self.conductor.instance_get_all_by_host(ctxt, self.host):
            if record["task_state"] is not None:
                continue   # an operation is under way; it records the result
            with self.lifecycle.locks.hold(record["uuid"]):
                try:
                    # Re-read under the lock: an operation may have just ended.
                    record = self.conductor.instance_get(ctxt, record["uuid"])
                    if record["task_state"] is None:
                        self._sync_one(ctxt, record, record["uuid"] in domains)
                except (exception.InstanceStateConflict, exception.InstanceNotFound):
                    pass   # changed meanwhile: the next sync looks again
                except Exception:
                    LOG.exception("power state sync of %s failed", record["uuid"])

    def _sync_one(self, ctxt, record: dict, has_domain: bool) -> None:
        if record["vm_state"] in (st.BUILDING, st.DELETED):
            return
        if not has_domain:
            if record["vm_state"] != st.ERROR:
                self._fail(ctxt, record, "the guest's domain vanished from the hypervisor")
            return
        self._apply_power(ctxt, record, self._power(record))

    def _apply_power(self, ctxt, record: dict, power: int) -> None:
        values = {}
        if power != record["power_state"]:
            values["power_state"] = power
        if record["vm_state"] == st.ACTIVE and record["task_state"] is None \
                and power in _OFF:
            values["vm_state"] = st.STOPPED
            LOG.info("instance %s stopped by itself (%s)", record["uuid"],
                     power_state.name(power))
        if values:
            self.conductor.instance_update(
                ctxt, record["uuid"], values,
                expected={"vm_state": record["vm_state"], "task_state": None})

    # --- lifecycle events -------------------------------------------------------

    def start_event_worker(self) -> None:
        self.driver.register_event_listener(self._on_event)
        self._event_worker = concurrency.spawn(self._event_loop)

    def stop_event_worker(self) -> None:
        self.driver.register_event_listener(None)
        self._stopping = True
        self._events_ready.set()

    def _on_event(self, event: events.Event) -> None:
        # Runs on the driver's thread: queue and return at once.
        self._events.append(event)
        self._events_ready.set()

    def _event_loop(self) -> None:
        while not self._stopping:
            self._events_ready.wait(1.0)
            self._events_ready.clear()
            while self._events and not self._stopping:
                self._handle_event(self._events.popleft())

    def _handle_event(self, event: events.Event) -> None:
        if not isinstance(event, events.LifecycleEvent):
            # Device removals are for the flow waiting on them (volumes).
            handler = self.device_removed_handler
            if handler is not None:
                handler(event)
            return
        ctxt = get_admin_context()
        try:
            record = self.conductor.instance_get(ctxt, event.instance_uuid)
        except exception.InstanceNotFound:
            return
        if record["host"] != self.host or record["task_state"] is not None:
            return   # an operation in progress records its own outcome
        try:
            # Events arrive late and out of order (a "stopped" can come after
            # the next start): ask the hypervisor for the state now instead
            # of trusting the transition the event names.
            with self.lifecycle.locks.hold(event.instance_uuid):
                record = self.conductor.instance_get(ctxt, event.instance_uuid)
                if record["task_state"] is None:
                    self._apply_power(ctxt, record, self._power(record))
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            pass    # the periodic sync has the last word
        except Exception:
            LOG.exception("handling %s of %s failed", event.transition,
                          event.instance_uuid)
