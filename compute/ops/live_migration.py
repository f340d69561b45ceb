"""The agent's part of a live migration (conductor/flows/live_migrate.py
orchestrates; the driver contract is in compute/virt/driver.py).

Rules:

* the conductor calls the checks and the destination's steps (prepare,
  finalize, rollback) and waits for their answers: they take seconds;
* the migration itself is a cast to the source: it runs on a pool of
  ``[compute] max_concurrent_live_migrations`` workers, not on an RPC
  worker; while it runs the agent sends the job's progress every
  ``[compute] live_migration_progress_interval`` seconds (conductor
  ``migration_progress``) and at the end reports the outcome (conductor
  ``live_migration_done``: no error when the guest runs on the
  destination; the error for administrators and a public message
  otherwise, the guest still running here);
* the job runs in the hypervisor and outlives an agent killed meanwhile:
  the restarted source watches what is left of it and reports its end
  (:meth:`LiveMigrationOps.recover`, called by the start-up reconciliation);
* the source acts only on an instance recorded on its own host, the
  destination on one a migration in progress brings to it (the conductor
  checks both: conductor/agent_access.py);
* migrate data crosses RPC as compute.virt.migration.MigrateData dicts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from oslo_config import cfg

from compute.lifecycle import Lifecycle
from compute.virt.migration import MigrateData
from flotilla import actions, concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

LOG = logging.getLogger(__name__)


class LiveMigrationOps:
    """Live migrations of the guests of one host, as source or destination."""

    def __init__(self, conf: cfg.ConfigOpts, lifecycle: Lifecycle) -> None:
        self.conf = conf
        self.host = lifecycle.host
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.pool = concurrency.WorkerPool(conf.compute.max_concurrent_live_migrations,
                                           name="live-migration")

    def _instance(self, ctxt: RequestContext, instance_uuid: str,
                  here: bool) -> Instance:
        """The instance, which must be recorded on this host (``here``, the
        source) or migrating to it (the destination)."""
        record = self.conductor.instance_get(ctxt, instance_uuid)
        on_this_host = record.get("host") == self.host
        if here != on_this_host:
            raise exception.MigrationError(
                instance_uuid=instance_uuid,
                reason="it is recorded on host %s" % record.get("host"))
        return Instance.from_record(record)

    # --- calls (the conductor waits) -------------------------------------------------

    def check_source(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        instance = self._instance(ctxt, instance_uuid, here=True)
        return self.driver.check_can_migrate_source(instance, live=True).to_dict()

    def check_destination(self, ctxt: RequestContext, instance_uuid: str,
                          migrate_data: dict) -> dict:
        instance = self._instance(ctxt, instance_uuid, here=False)
        return self.driver.check_can_migrate_destination(
            instance, MigrateData.coerce(migrate_data)).to_dict()

    def prepare(self, ctxt: RequestContext, instance_uuid: str,
                image: ImageMeta | dict | None, migrate_data: dict,
                block_device_mapping: list | None = None) -> dict:
        instance = self._instance(ctxt, instance_uuid, here=False)
        volumes = [BlockDeviceMapping.coerce(b) for b in block_device_mapping or ()]
        return self.driver.pre_live_migration(instance, ImageMeta.coerce(image), volumes,
                                              MigrateData.coerce(migrate_data)).to_dict()

    def finish_at_destination(self, ctxt: RequestContext, instance_uuid: str,
                              migrate_data: dict) -> None:
        instance = Instance.from_record(self.conductor.instance_get(ctxt, instance_uuid))
        self.driver.post_live_migration_at_destination(instance,
                                                       MigrateData.coerce(migrate_data))

    # Cleanups name the guest only: they come after the migration ended (the
    # instance is no longer this host's to read) and the driver needs no more.

    def finish_at_source(self, ctxt: RequestContext, instance_uuid: str,
                         migrate_data: dict) -> None:
        self.driver.post_live_migration(Instance(uuid=instance_uuid),
                                        MigrateData.coerce(migrate_data))

    def rollback_at_destination(self, ctxt: RequestContext, instance_uuid: str,
                                migrate_data: dict) -> None:
        self.driver.rollback_live_migration_at_destination(
            Instance(uuid=instance_uuid), MigrateData.coerce(migrate_data))

    def abort(self, ctxt: RequestContext, instance_uuid: str) -> None:
        instance = self._instance(ctxt, instance_uuid, here=True)
        self.driver.live_migration_abort(instance)

    def force_complete(self, ctxt: RequestContext, instance_uuid: str) -> None:
        instance = self._instance(ctxt, instance_uuid, here=True)
        self.driver.live_migration_force_complete(instance)

    # --- the migration (a cast) -------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
              migrate_data: dict) -> None:
        """Queue the migration and return (no RPC worker waits for it)."""
        self.pool.submit(self.migrate, ctxt, instance_uuid, migration_uuid, migrate_data)

    def migrate(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
                migrate_data: dict) -> bool:
        """Run the job, sending its progress, and report; True on success."""
        def run() -> None:
            instance = self._instance(ctxt, instance_uuid, here=True)
            if instance.task_state != st.MIGRATING:
                raise exception.MigrationError(instance_uuid=instance_uuid,
                                               reason="its task is %s" % instance.task_state)
            job = concurrency.spawn(self.driver.live_migration, instance,
                                    MigrateData.coerce(migrate_data))
            self._send_progress(ctxt, instance, migration_uuid, job)
            job.wait()
        return self._run_and_report(ctxt, instance_uuid, migration_uuid, run)

    def recover(self, ctxt: RequestContext, record: dict) -> bool:
        """At start-up, for an instance of this host in task ``migrating``:
        when its live migration's job was started (the migration is
        ``running``, from here), the job outlived the agent that ran it.
        Watch what is left of it on the pool as :meth:`migrate` would have
        (progress, abort, timeout) and report its outcome; a job that ended
        or never started while the agent was down is reported at once (the
        guest still here: an error, so the flow reverts; gone: done).
        False when there is nothing of this host's to recover (the flow
        handles the rest)."""
        uuid = record["uuid"]
        try:
            migration = self.conductor.migration_get_in_progress(ctxt, uuid)
        except exception.FlotillaException as exc:
            LOG.info("migration of %s not known (%s): left to its flow", uuid, exc)
            return False
        if not migration or migration.get("status") != "running" \
                or migration.get("source_host") != self.host \
                or migration.get("migration_type") != "live-migration":
            return False
        instance = Instance.from_record(record)

        def run() -> None:
            job = concurrency.spawn(self.driver.live_migration_recover, instance)
            self._send_progress(ctxt, instance, migration["uuid"], job)
            job.wait()
        LOG.warning("instance %s was live-migrating when this agent stopped: watching "
                    "what is left of its job", uuid)
        self.pool.submit(self._run_and_report, ctxt, uuid, migration["uuid"], run)
        return True

    def _run_and_report(self, ctxt: RequestContext, instance_uuid: str,
                        migration_uuid: str, run) -> bool:
        error = message = None
        try:
            run()
        except Exception as exc:
            error = actions.admin_details(exc, with_traceback=False)
            message = ("The live migration was aborted."
                       if isinstance(exc, exception.MigrationAborted)
                       else "The live migration failed; the server runs where it was.")
            LOG.warning("live migration of %s failed: %s", instance_uuid, error)
        try:
            self.conductor.live_migration_done(ctxt, instance_uuid, migration_uuid,
                                               self.host, error=error, message=message)
        except exception.MessagingException as exc:
            # The flow's poll asks both hosts where the guest runs.
            LOG.warning("could not report the live migration of %s: %s",
                        instance_uuid, exc)
        return error is None

    def _send_progress(self, ctxt: RequestContext, instance: Instance,
                       migration_uuid: str, job: Any) -> None:
        interval = self.conf.compute.live_migration_progress_interval
        last = 0.0
        while not job.done():
            if time.monotonic() - last >= interval:
                last = time.monotonic()
                try:
                    progress = self.driver.live_migration_progress(instance)
                    if progress is not None:
                        self.conductor.migration_progress(ctxt, migration_uuid,
                                                          progress.to_dict())
                except Exception as exc:   # progress is informative only
                    LOG.debug("progress of %s not sent: %s", instance.uuid, exc)
            concurrency.sleep(0.2)

    def shutdown(self, timeout: float | None = None) -> None:
        self.pool.shutdown(timeout=timeout)
