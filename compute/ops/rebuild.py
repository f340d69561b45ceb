"""The agent's part of a rebuild: a new root disk from an image.

Rules:

* the server must be on this host in task ``rebuilding``; under the
  instance's lock the agent moves it to ``rebuild_spawning`` and has the
  driver replace the disk (the driver fetches the new one first, so a
  failure to get it leaves the guest untouched) and start the guest unless
  the server was stopped;
* success: the agent reports with conductor ``rebuild_done`` (a call: the
  flow records the new image and ends the action), then leaves the server
  active (or stopped) with no task;
* failure: the server goes back to its vm_state when the guest is still in
  the power state it had (its old disk survived), else to ERROR; then the
  failure is reported, with a reason its owner may read;
* a server booted from a volume (``volume_backed``, compute 1.14): the
  conductor has powered its guest off (:meth:`RebuildOps.set_power`) and
  re-imaged the root volume; there is no image to fetch, the guest keeps
  its domain, defined again around its volumes (the same NBD exports) and
  started unless the server was stopped; its ``image_ref`` stays "".
  ``set_power`` acts only on a server of this host in task ``rebuilding``.
  Its failure never says the server is unchanged (the root volume may hold
  the new image already: the conductor's flow knows and says so); a server
  that should run and whose guest does not goes to ERROR.
"""

from __future__ import annotations

import datetime
import logging

from compute.lifecycle import Lifecycle
from compute.virt import power_state
from flotilla import actions, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

LOG = logging.getLogger(__name__)

OPERATION = st.operation("rebuild")


class RebuildOps:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.host = lifecycle.host
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.reporter = lifecycle.reporter

    def rebuild(self, ctxt: RequestContext, instance_uuid: str,
                image: ImageMeta | dict | None, power_on: bool = True,
                block_device_mapping: list | None = None,
                volume_backed: bool = False) -> bool:
        """Rebuild and report; True when the guest has its new disk (or,
        evacuated from a volume, its volumes back; ``volume_backed``: its
        re-imaged root volume)."""
        if volume_backed:
            image = None     # the root volume holds the image already
        image = ImageMeta.coerce(image)
        volumes = [BlockDeviceMapping.coerce(b) for b in block_device_mapping or ()]
        with self.lifecycle.locks.hold(instance_uuid):
            try:
                record = self.conductor.instance_update(
                    ctxt, instance_uuid, {"task_state": st.REBUILD_SPAWNING},
                    expected={"vm_state": list(OPERATION.from_vm_states),
                              "task_state": [st.REBUILDING]})
            except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
                LOG.warning("rebuild of %s refused: %s", instance_uuid, exc)
                self._report(ctxt, instance_uuid, actions.admin_details(exc, False),
                             "The server changed before its rebuild started.")
                return False
            instance = Instance.from_record(record)
            before = self._power(instance)
            try:
                with self.reporter.event(ctxt, instance_uuid, OPERATION.action,
                                         "compute_rebuild_instance", fault=False):
                    if volumes:
                        self.driver.rebuild(instance, image, power_on,
                                            block_device_info=volumes)
                    else:
                        self.driver.rebuild(instance, image, power_on)
            except Exception as exc:
                self._failed(ctxt, record, before, exc,
                             volume_backed=volume_backed, power_on=power_on)
                return False
            # The flow ends the action on the report; the report is a cast,
            # so the server names its new image in the same update that shows
            # it idle (a client that sees it active sees the new image).
            self._report(ctxt, instance_uuid, None, None)
            done = {"task_state": None, "vm_state": st.ACTIVE if power_on else st.STOPPED,
                    "power_state": self._power(instance),
                    "launched_at": datetime.datetime.now(datetime.UTC).isoformat()}
            if image is not None and image.id:
                done["image_ref"] = image.id
            self.conductor.instance_update(ctxt, instance_uuid, done,
                                           expected={"task_state": st.REBUILD_SPAWNING})
            LOG.info("rebuilt %s from image %s", instance_uuid, image.id if image else None)
            return True

    def set_power(self, ctxt: RequestContext, instance_uuid: str, power_on: bool) -> int:
        """Power the guest of a rebuilding server of this host off (a clean
        shutdown first, as a stop) or on; its power state after (1.14)."""
        with self.lifecycle.locks.hold(instance_uuid):
            record = self.conductor.instance_get(ctxt, instance_uuid)
            if record.get("host") != self.host:
                raise exception.InstanceNotFound(instance_uuid=instance_uuid)
            if record.get("task_state") != st.REBUILDING:
                raise exception.InstanceStateConflict(
                    instance_uuid=instance_uuid, actual_vm_state=record.get("vm_state"),
                    actual_task_state=record.get("task_state"), expected_vm_state="any",
                    expected_task_state=st.REBUILDING)
            instance = Instance.from_record(record)
            if power_on:
                self.driver.power_on(instance)
            elif self._power(instance) != power_state.NOSTATE:
                self.driver.power_off(instance)
            now = self._power(instance)
            LOG.info("guest of rebuilding %s powered %s (power state %s)", instance_uuid,
                     "on" if power_on else "off", now)
            return now

    def _failed(self, ctxt: RequestContext, record: dict, before: int,
                exc: Exception, volume_backed: bool = False,
                power_on: bool = True) -> None:
        instance = Instance.from_record(record)
        now = self._power(instance)
        untouched = now == before and now != power_state.NOSTATE
        if volume_backed and power_on and now != power_state.RUNNING:
            # Its guest was powered off for a re-image: off still is not
            # "as it was" for a server that should run.
            untouched = False
        vm_state = record["vm_state"] if untouched else st.ERROR
        LOG.error("rebuild of %s failed (%s): %s", instance.uuid,
                  "guest untouched" if untouched else "guest lost its disk", exc)
        try:
            self.conductor.instance_update(
                ctxt, instance.uuid,
                {"task_state": None, "vm_state": vm_state, "power_state": now},
                expected={"task_state": st.REBUILD_SPAWNING})
        except (exception.InstanceStateConflict, exception.InstanceNotFound) as conflict:
            LOG.warning("instance %s changed during its failed rebuild: %s",
                        instance.uuid, conflict)
        public = ("The new disk could not be made from the image; the server is "
                  "unchanged." if untouched else
                  "The server's new disk could not be started.")
        if volume_backed:
            public = ("The server's guest could not be defined again around its "
                      "volumes." if untouched else
                      "The server's guest could not be started again on its volumes.")
        self._report(ctxt, instance.uuid, actions.admin_details(exc, False), public)

    def _report(self, ctxt: RequestContext, instance_uuid: str, error: str | None,
                message: str | None) -> None:
        try:
            self.conductor.rebuild_done(ctxt, instance_uuid, self.host, error=error,
                                        message=message)
        except exception.MessagingException as exc:
            LOG.warning("could not report the rebuild of %s: %s", instance_uuid, exc)

    def _power(self, instance: Instance) -> int:
        try:
            return self.driver.get_info(instance).power_state
        except exception.InstanceNotFound:
            return power_state.NOSTATE

    def interrupted(self, ctxt: RequestContext, record: dict) -> None:
        """The agent restarted during a rebuild (the reconciliation already
        put the server in a stable state): report it, so the flow ends."""
        self._report(ctxt, record["uuid"],
                     "the compute agent restarted during the rebuild (task %s)"
                     % record["task_state"],
                     "The rebuild was interrupted by a restart of the server's host "
                     "service.")
