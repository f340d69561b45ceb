"""Guest operations with their state guards.

Every operation of :data:`flotilla.states.OPERATIONS` run by the agent
follows the same steps, so the rules live in one place:

1. take the instance's lock (operations on one instance never overlap);
2. compare-and-swap the instance into the operation's task_state through the
   conductor, expecting one of the vm_states the operation may start from
   and either no task or this same task (the API may have set it already).
   An instance in any other state makes the operation end cleanly: nothing
   is done, the refusal is recorded as the event's Error and the request's
   action is finished;
3. run the driver call inside the action event ``compute_<action>_instance``
   (flotilla.actions: Error with the traceback and a fault on failure);
4. compare-and-swap to the resulting vm_state with no task, recording the
   power state libvirt reports; on failure put the instance back to a
   stable state (the fault says why).

The agent finishes the request's action when its operation ends the
request (stop, start, reboot, ...). A build is a step of the conductor's
build flow: the agent reports its outcome (``build_done``) and the flow
finishes the action or tries another host. The agent has no database
access: every read and write is a conductor call.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from compute.locks import InstanceLocks
from compute.virt import power_state
from compute.virt.driver import ComputeDriver
from flotilla import actions, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

LOG = logging.getLogger(__name__)

BUILD = st.operation("build")
DELETE = st.operation("delete")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def event_name(op: st.Operation) -> str:
    return "compute_%s_instance" % op.action


class Lifecycle:
    """Runs :class:`flotilla.states.Operation` s on the guests of one host."""

    def __init__(self, host: str, driver: ComputeDriver, conductor,
                 locks: InstanceLocks | None = None) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.locks = locks or InstanceLocks()
        self.reporter = actions.Reporter(actions.ConductorStore(conductor), host)

    def run(self, ctxt: RequestContext, op: st.Operation, instance_uuid: str,
            action: Callable[[Instance], None],
            from_task_states: tuple = (None,),
            start_values: dict | None = None,
            done_values: Callable[[], dict] | None = None,
            task_state: str | None = None) -> dict | None:
        """Run ``action`` on the driver under ``op``'s state rules, in
        ``task_state`` (default: the operation's first).

        Returns the instance as left, or None when the operation did not
        run or failed (recorded: a cast has nobody to raise to).
        """
        is_build = op is BUILD
        task = task_state or op.task_state
        with self.locks.hold(instance_uuid):
            try:
                record = self.conductor.instance_update(
                    ctxt, instance_uuid, {"task_state": task, **(start_values or {})},
                    expected={"vm_state": list(op.from_vm_states),
                              "task_state": list(from_task_states) + [task]})
            except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
                LOG.warning("%s of instance %s refused: %s", op.name, instance_uuid, exc)
                self.reporter.record(ctxt, instance_uuid, op.action, event_name(op),
                                     error=exc, fault=False)
                if not is_build:
                    self.reporter.finish(ctxt, instance_uuid, failed=True)
                return None
            instance = Instance.from_record(record)
            try:
                with self.reporter.event(ctxt, instance_uuid, op.action, event_name(op),
                                         fault=not is_build):
                    action(instance)
            except Exception as exc:
                LOG.error("%s of instance %s failed: %s", op.name, instance_uuid, exc)
                if is_build:
                    self._build_failed(ctxt, instance, exc)
                else:
                    self._recover(ctxt, task, record)
                    self.reporter.finish(ctxt, instance_uuid, failed=True)
                return None
            values = {"task_state": None, "power_state": self._power_state(instance)}
            if op.to_vm_state is not None:
                values["vm_state"] = op.to_vm_state
            if done_values is not None:
                values.update(done_values())
            # The action first: once the state is stable, the record is whole.
            if is_build:
                try:
                    self.conductor.build_done(ctxt, instance_uuid, self.host)
                except exception.MessagingException as exc:
                    # The build flow's poll finds the guest running anyway.
                    LOG.warning("could not report the build of %s: %s", instance_uuid, exc)
            else:
                self.reporter.finish(ctxt, instance_uuid)
            return self.conductor.instance_update(
                ctxt, instance_uuid, values, expected={"task_state": task})

    def _build_failed(self, ctxt, instance: Instance, exc: Exception) -> None:
        """A failed spawn is the conductor's to handle: it records the
        fault, frees the claim and reschedules or ends the build in ERROR."""
        try:
            self.driver.destroy(instance)   # spawn cleans up; make sure
        except Exception:
            LOG.exception("cleaning up the failed spawn of %s", instance.uuid)
        self.conductor.build_done(ctxt, instance.uuid, self.host,
                                  error=actions.admin_details(exc, with_traceback=False))

    def _recover(self, ctxt, task: str, record: dict) -> None:
        """Back to a stable state after a failed driver call (the event
        already recorded the fault)."""
        values = {"task_state": None}
        try:
            values["power_state"] = self._power_state(Instance.from_record(record))
        except Exception:  # the guest may be gone; the state sync repairs it
            values["power_state"] = power_state.NOSTATE
        try:
            self.conductor.instance_update(ctxt, record["uuid"], values,
                                           expected={"task_state": task})
        except exception.InstanceStateConflict as conflict:
            LOG.warning("instance %s changed while recovering: %s",
                        record["uuid"], conflict)

    def _power_state(self, instance: Instance) -> int:
        try:
            return self.driver.get_info(instance).power_state
        except exception.InstanceNotFound:
            return power_state.NOSTATE

    # --- the two operations with more than one driver call -------------------

    def build(self, ctxt: RequestContext, instance_uuid: str,
              image: ImageMeta | dict | None,
              block_device_mapping: list | None = None) -> dict | None:
        image_meta = ImageMeta.coerce(image)
        disks = [BlockDeviceMapping.coerce(b) for b in block_device_mapping or []]

        def spawn(instance: Instance) -> None:
            if disks:
                self.driver.spawn(instance, image_meta, block_device_info=disks)
            else:
                self.driver.spawn(instance, image_meta)

        # The host is recorded in the same step that enters spawning, before
        # anything is created: a crash mid-spawn is repaired by this host's
        # init_host.
        return self.run(ctxt, BUILD, instance_uuid, spawn,
                        from_task_states=(st.SCHEDULING, None),
                        start_values={"host": self.host, "node": self.host},
                        done_values=lambda: {"launched_at": _now()},
                        task_state=st.SPAWNING)

    def terminate(self, ctxt: RequestContext, instance_uuid: str) -> bool:
        """Destroy the guest and soft-delete the instance, then finish the
        delete action. Idempotent."""
        with self.locks.hold(instance_uuid):
            try:
                record = self.conductor.instance_update(
                    ctxt, instance_uuid, {"task_state": st.DELETING},
                    expected={"vm_state": list(DELETE.from_vm_states)})
            except exception.InstanceNotFound:
                LOG.info("instance %s already deleted", instance_uuid)
                return False
            try:
                with self.reporter.event(ctxt, instance_uuid, DELETE.action,
                                         "compute_terminate_instance"):
                    self.driver.destroy(Instance.from_record(record))
            except Exception as exc:
                LOG.error("destroying instance %s failed: %s", instance_uuid, exc)
                self._recover(ctxt, st.DELETING, record)
                self.conductor.instance_update(ctxt, instance_uuid,
                                               {"vm_state": st.ERROR},
                                               expected={"task_state": None})
                self.reporter.finish(ctxt, instance_uuid, failed=True)
                return False
            self.reporter.finish(ctxt, instance_uuid)
            self.conductor.instance_update(
                ctxt, instance_uuid,
                {"vm_state": st.DELETED, "task_state": None,
                 "power_state": power_state.NOSTATE, "terminated_at": _now()},
                expected={"task_state": st.DELETING})
            self.conductor.instance_destroy(ctxt, instance_uuid,
                                            expected={"vm_state": st.DELETED})
            return True
