"""The agent's part of a resize or cold migration (conductor/flows/resize.py
orchestrates; the driver contract is in compute/virt/driver.py, "cold
migration and resize").

Rules:

* every method is a call: the conductor waits for it (the disk copy of
  :meth:`ResizeOps.migrate_disk` included, with a longer RPC timeout);
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

from compute.lifecycle import Lifecycle
from compute.virt.migration import MigrateData
from flotilla import exception
from flotilla.context import RequestContext
from flotilla.objects import Flavor, ImageMeta, Instance

LOG = logging.getLogger(__name__)


class ResizeOps:
    """Cold moves of the guests of one host, as source or destination."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.host = lifecycle.host
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor

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

    def migrate_disk(self, ctxt: RequestContext, instance_uuid: str,
                     migrate_data: dict) -> dict:
        """On the source: power off, send the disk; the guest stays here."""
        instance = self._source_instance(ctxt, instance_uuid)
        return self.driver.migrate_disk_and_power_off(
            instance, MigrateData.coerce(migrate_data)).to_dict()

    def finish(self, ctxt: RequestContext, instance_uuid: str, flavor: dict,
               image: ImageMeta | dict | None, migrate_data: dict,
               power_on: bool = True) -> None:
        """On the destination: the guest with the new ``flavor``."""
        instance = self._instance(ctxt, instance_uuid, flavor)
        self.driver.finish_migration(instance, ImageMeta.coerce(image), [],
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
                      migrate_data: dict, power_on: bool = True) -> None:
        """On the source: the kept guest back with the old ``flavor``."""
        instance = self._instance(ctxt, instance_uuid, flavor)
        self.driver.finish_revert_migration(instance, [], MigrateData.coerce(migrate_data),
                                            power_on=power_on)
