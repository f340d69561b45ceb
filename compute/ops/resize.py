"""The agent's part of a resize or cold migration (conductor/flows/resize.py
orchestrates; the driver contract is in compute/virt/driver.py, "cold
migration and resize").

Rules:

* the disk copy is a cast to the source: it runs on a pool of ``[compute]
  max_concurrent_live_migrations`` workers (a move is a move), not on an RPC
  worker, and ends with a report (conductor ``resize_disk_done``: no error
  when the disk arrived; the error for administrators and a public message
  otherwise); every other method is a call the conductor waits for;
* the source acts only on an instance recorded on its own host, or one a
  resize in progress moved away from it (confirm and revert come after the
  switch); the destination on one a resize brings to it (the conductor
  checks both: conductor/agent_access.py);
* the flavor a host must use is passed by the conductor (the new one on the
  destination, the old one for a revert on the source): the instance's
  record holds only one of them at a time;
* migrate data crosses RPC as compute.virt.migration.MigrateData dicts.
"""

from __future__ import annotations

import dataclasses
import logging

from oslo_config import cfg

from compute.lifecycle import Lifecycle
from compute.virt.migration import MigrateData
from flotilla import actions, concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, Flavor, ImageMeta, Instance

LOG = logging.getLogger(__name__)


class ResizeOps:
    """Cold moves of the guests of one host, as source or destination."""

    def __init__(self, conf: cfg.ConfigOpts, lifecycle: Lifecycle) -> None:
        self.host = lifecycle.host
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.pool = concurrency.WorkerPool(conf.compute.max_concurrent_live_migrations,
                                           name="resize")

    def _instance(self, ctxt: RequestContext, instance_uuid: str,
                  flavor: Flavor | dict | None = None) -> Instance:
        instance = Instance.from_record(self.conductor.instance_get(ctxt, instance_uuid))
        if flavor:
            instance = dataclasses.replace(instance, flavor=Flavor.coerce(flavor))
        return instance

    def _source_instance(self, ctxt: RequestContext, instance_uuid: str) -> Instance:
        instance = self._instance(ctxt, instance_uuid)
        if instance.host != self.host:
            raise exception.MigrationError(
                instance_uuid=instance_uuid,
                reason="it is recorded on host %s" % instance.host)
        return instance

    def check_source(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        instance = self._source_instance(ctxt, instance_uuid)
        return self.driver.check_can_migrate_source(instance, live=False).to_dict()

    def check_destination(self, ctxt: RequestContext, instance_uuid: str,
                          migrate_data: dict) -> dict:
        instance = self._instance(ctxt, instance_uuid)
        return self.driver.check_can_migrate_destination(
            instance, MigrateData.coerce(migrate_data)).to_dict()

    def start(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
              migrate_data: dict) -> None:
        """Queue the disk copy and return (no RPC worker waits for it)."""
        self.pool.submit(self.migrate_disk, ctxt, instance_uuid, migration_uuid,
                         migrate_data)

    def migrate_disk(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
                     migrate_data: dict) -> bool:
        """On the source: power off, send the disk (the guest stays here),
        and report; True on success."""
        error = message = None
        data = None
        try:
            instance = self._source_instance(ctxt, instance_uuid)
            if instance.task_state != st.RESIZE_MIGRATING:
                raise exception.MigrationError(instance_uuid=instance_uuid,
                                               reason="its task is %s" % instance.task_state)
            data = self.driver.migrate_disk_and_power_off(
                instance, MigrateData.coerce(migrate_data)).to_dict()
        except Exception as exc:
            error = actions.admin_details(exc, with_traceback=False)
            message = "Sending the server's disk to its new host failed."
            LOG.warning("disk of %s not sent: %s", instance_uuid, error)
        try:
            self.conductor.resize_disk_done(ctxt, instance_uuid, migration_uuid, self.host,
                                            migrate_data=data, error=error, message=message)
        except exception.MessagingException as exc:
            # The reaper ends the resize at its deadline (and reverts it).
            LOG.warning("could not report the disk of %s: %s", instance_uuid, exc)
        return error is None

    def shutdown(self, timeout: float | None = None) -> None:
        self.pool.shutdown(timeout=timeout)

    def finish(self, ctxt: RequestContext, instance_uuid: str, flavor: dict,
               image: ImageMeta | dict | None, migrate_data: dict,
               power_on: bool = True, block_device_mapping: list | None = None) -> None:
        """On the destination: the guest with the new ``flavor`` and the
        volume disks of ``block_device_mapping`` (the same exports)."""
        instance = self._instance(ctxt, instance_uuid, flavor)
        self.driver.finish_migration(instance, ImageMeta.coerce(image),
                                     _volumes(block_device_mapping),
                                     MigrateData.coerce(migrate_data), power_on=power_on)

    def confirm(self, ctxt: RequestContext, instance_uuid: str, migrate_data: dict) -> None:
        """On the source: remove the copy kept for a revert."""
        self.driver.confirm_migration(Instance(uuid=instance_uuid),
                                      MigrateData.coerce(migrate_data))

    def revert_at_destination(self, ctxt: RequestContext, instance_uuid: str,
                              migrate_data: dict) -> None:
        """On the destination: destroy the guest and whatever disk arrived."""
        self.driver.cleanup_migration_at_destination(Instance(uuid=instance_uuid),
                                                     MigrateData.coerce(migrate_data))

    def finish_revert(self, ctxt: RequestContext, instance_uuid: str, flavor: dict,
                      migrate_data: dict, power_on: bool = True,
                      block_device_mapping: list | None = None) -> None:
        """On the source: the kept guest back with the old ``flavor`` and
        its volume disks."""
        instance = self._instance(ctxt, instance_uuid, flavor)
        self.driver.finish_revert_migration(instance, _volumes(block_device_mapping),
                                            MigrateData.coerce(migrate_data),
                                            power_on=power_on)


def _volumes(block_device_mapping: list | None) -> list[BlockDeviceMapping]:
    """The volume disks a guest keeps across a cold move, as the drivers
    take them (BlockDeviceMapping objects: connection, device, boot index)."""
    return [BlockDeviceMapping.coerce(b) for b in block_device_mapping or ()]
