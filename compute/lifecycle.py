"""Guest operations with their state guards.

Every operation follows the same steps, so the rules live in one place:

1. take the instance's lock (operations on one instance never overlap);
2. record an action event through the conductor;
3. compare-and-swap the instance into the operation's task_state, expecting
   one of the vm_states the operation may start from and either no task or
   this same task (the API may have set it already). An instance in any
   other state makes the operation fail cleanly: nothing is done and the
   event records why;
4. run the driver call;
5. compare-and-swap to the resulting vm_state with no task, recording the
   power state libvirt reports; on failure put the instance back to a
   stable state, record a fault and finish the event as an error.

The agent has no database access: every read and write is a conductor call.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import traceback
from collections.abc import Callable

from compute.locks import InstanceLocks
from compute.virt import power_state
from compute.virt.driver import ComputeDriver
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import ImageMeta, Instance

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str                    # action and event name
    task_state: str              # the transitional state while it runs
    from_vm_states: tuple        # where it may start
    to_vm_state: str | None      # where success leaves it (None: unchanged)


STOP = Operation("stop", st.POWERING_OFF, (st.ACTIVE, st.PAUSED, st.SUSPENDED, st.ERROR),
                 st.STOPPED)
START = Operation("start", st.POWERING_ON, (st.STOPPED,), st.ACTIVE)
REBOOT_SOFT = Operation("reboot", st.REBOOTING, (st.ACTIVE,), st.ACTIVE)
REBOOT_HARD = Operation("reboot", st.REBOOTING_HARD,
                        (st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED, st.ERROR),
                        st.ACTIVE)
PAUSE = Operation("pause", st.PAUSING, (st.ACTIVE,), st.PAUSED)
UNPAUSE = Operation("unpause", st.UNPAUSING, (st.PAUSED,), st.ACTIVE)
SUSPEND = Operation("suspend", st.SUSPENDING, (st.ACTIVE,), st.SUSPENDED)
RESUME = Operation("resume", st.RESUMING, (st.SUSPENDED,), st.ACTIVE)
BUILD = Operation("create", st.SPAWNING, (st.BUILDING,), st.ACTIVE)
DELETE = Operation("delete", st.DELETING,
                   (st.BUILDING, st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED,
                    st.ERROR), None)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class Lifecycle:
    """Runs :class:`Operation` s on the guests of one host."""

    def __init__(self, host: str, driver: ComputeDriver, conductor,
                 locks: InstanceLocks | None = None) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.locks = locks or InstanceLocks()

    def run(self, ctxt: RequestContext, op: Operation, instance_uuid: str,
            action: Callable[[Instance], None],
            from_task_states: tuple = (None,),
            start_values: dict | None = None,
            done_values: Callable[[], dict] | None = None) -> dict | None:
        """Run ``action`` on the driver under ``op``'s state rules.

        Returns the instance as left, or None when the operation could not
        start (wrong state; already recorded). Driver failures are recorded
        and not raised: a cast has nobody to raise to.
        """
        with self.locks.hold(instance_uuid):
            event = "compute_%s_instance" % op.name
            self.conductor.action_event_start(ctxt, instance_uuid, op.name,
                                              event, self.host)
            try:
                record = self.conductor.instance_update(
                    ctxt, instance_uuid, {"task_state": op.task_state, **(start_values or {})},
                    expected={"vm_state": list(op.from_vm_states),
                              "task_state": list(from_task_states) + [op.task_state]})
            except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
                LOG.warning("%s of instance %s refused: %s", op.name, instance_uuid, exc)
                self._finish_event(ctxt, instance_uuid, event, "Error", str(exc))
                return None
            instance = Instance.coerce(record)
            try:
                action(instance)
            except Exception as exc:
                LOG.error("%s of instance %s failed: %s", op.name, instance_uuid, exc)
                self._finish_event(ctxt, instance_uuid, event, "Error",
                                   traceback.format_exc(limit=5))
                if op is BUILD:
                    self._build_failed(ctxt, instance, exc)
                else:
                    self._recover(ctxt, op, record, exc)
                return None
            values = {"task_state": None, "power_state": self._power_state(instance)}
            if op.to_vm_state is not None:
                values["vm_state"] = op.to_vm_state
            if done_values is not None:
                values.update(done_values())
            # The event first: once the state is stable, the record is whole.
            self._finish_event(ctxt, instance_uuid, event, "Success")
            return self.conductor.instance_update(
                ctxt, instance_uuid, values, expected={"task_state": op.task_state})

    def _build_failed(self, ctxt, instance: Instance, exc: Exception) -> None:
        """A failed spawn is the conductor's to handle: it records the
        fault, frees the claim and reschedules or ends the build in ERROR."""
        try:
            self.driver.destroy(instance)   # spawn cleans up; make sure
        except Exception:
            LOG.exception("cleaning up the failed spawn of %s", instance.uuid)
        self.conductor.build_failed(ctxt, instance.uuid, self.host,
                                    "%s: %s" % (type(exc).__name__, exc))

    def _recover(self, ctxt, op: Operation, record: dict, exc: Exception) -> None:
        """Back to a stable state after a failed driver call, with a fault."""
        code = getattr(exc, "code", 500)
        self.conductor.instance_fault_create(
            ctxt, record["uuid"], code=code if isinstance(code, int) else 500,
            message="%s failed: %s" % (op.name, exc)[:255],
            details=traceback.format_exc(limit=10), host=self.host)
        values = {"task_state": None}
        try:
            values["power_state"] = self._power_state(Instance.coerce(record))
        except Exception:  # the guest may be gone; the state sync repairs it
            values["power_state"] = power_state.NOSTATE
        try:
            self.conductor.instance_update(ctxt, record["uuid"], values,
                                           expected={"task_state": op.task_state})
        except exception.InstanceStateConflict as conflict:
            LOG.warning("instance %s changed while recovering: %s",
                        record["uuid"], conflict)

    def _power_state(self, instance: Instance) -> int:
        try:
            return self.driver.get_info(instance).power_state
        except exception.InstanceNotFound:
            return power_state.NOSTATE

    def _finish_event(self, ctxt, instance_uuid, event, result, details=None) -> None:
        try:
            self.conductor.action_event_finish(ctxt, instance_uuid, event, result,
                                               details=details)
        except exception.NotFound:
            LOG.debug("no event %s to finish for %s", event, instance_uuid)

    # --- the two operations with more than one driver call -------------------

    def build(self, ctxt: RequestContext, instance_uuid: str, image: dict | None) -> dict | None:
        image_meta = ImageMeta.coerce(image)

        def spawn(instance: Instance) -> None:
            self.driver.spawn(instance, image_meta)

        # The host is recorded in the same step that enters spawning, before
        # anything is created: a crash mid-spawn is repaired by this host's
        # init_host.
        return self.run(ctxt, BUILD, instance_uuid, spawn,
                        from_task_states=(st.SCHEDULING, None),
                        start_values={"host": self.host, "node": self.host},
                        done_values=lambda: {"launched_at": _now()})

    def terminate(self, ctxt: RequestContext, instance_uuid: str) -> bool:
        """Destroy the guest and soft-delete the instance. Idempotent."""
        with self.locks.hold(instance_uuid):
            event = "compute_terminate_instance"
            try:
                record = self.conductor.instance_update(
                    ctxt, instance_uuid, {"task_state": st.DELETING},
                    expected={"vm_state": list(DELETE.from_vm_states)})
            except exception.InstanceNotFound:
                LOG.info("instance %s already deleted", instance_uuid)
                return False
            self.conductor.action_event_start(ctxt, instance_uuid, "delete",
                                              event, self.host)
            try:
                self.driver.destroy(Instance.coerce(record))
            except Exception as exc:
                LOG.error("destroying instance %s failed: %s", instance_uuid, exc)
                self._recover(ctxt, DELETE, record, exc)
                self.conductor.instance_update(ctxt, instance_uuid,
                                               {"vm_state": st.ERROR},
                                               expected={"task_state": None})
                self._finish_event(ctxt, instance_uuid, event, "Error", str(exc))
                return False
            self._finish_event(ctxt, instance_uuid, event, "Success")
            self.conductor.instance_update(
                ctxt, instance_uuid,
                {"vm_state": st.DELETED, "task_state": None,
                 "power_state": power_state.NOSTATE, "terminated_at": _now()},
                expected={"task_state": st.DELETING})
            self.conductor.instance_destroy(ctxt, instance_uuid,
                                            expected={"vm_state": st.DELETED})
            return True
