"""``flotilla-manage host``: operator actions on a whole compute host.

    flotilla-manage host drain HOST [--reason R] [--max-concurrent N]

``drain`` is flotilla.drain run from the control plane: the database for
reads and the service's disable, the conductor (RPC) for each guest's live
migration (a running or paused one) or cold migration and its confirmation
(a stopped one), each started as the API starts it (the server's task, an
accepted migration record, the action ``live-migration``, ``migrate`` or
``confirmResize`` under its own request id; a move, not a confirm, is
refused while a volume of the guest is being attached or detached). At
most ``[DEFAULT] max_concurrent_live_migrations`` at once (or
``--max-concurrent``); exit status 1 when a guest could not be moved, each
named with the migration's recorded reason.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from oslo_config import cfg

from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.db import api as db_api
from flotilla.db import migration_records as mig_db
from flotilla.db import resizes as rs_db
from flotilla.db import schema
from flotilla.db import volumes as vdb
from flotilla.db.instances import MIGRATION_ENDED
from flotilla.deadlines import task_deadline
from flotilla.drain import Drainer, DrainRefused, Guest, Outcome, format_progress

HELP = "hosts: drain HOST (disable it, migrate every guest off it)"

COMPUTE = "flotilla-compute"
LIVE = "live-migration"
OPERATION = st.operation("live_migrate")
COLD = st.operation("resize")
COLD_ACTION = "migrate"    # a cold migration is a resize recorded as "migrate"
CONFIRM = st.operation("confirm_resize")

# vm_state to the API's status name, for the drain's messages.
_STATUS = {st.ACTIVE: "ACTIVE", st.PAUSED: "PAUSED", st.STOPPED: "SHUTOFF",
           st.SUSPENDED: "SUSPENDED", st.ERROR: "ERROR", st.BUILDING: "BUILD",
           st.RESIZED: "VERIFY_RESIZE"}


def _guest(inst) -> Guest:
    return Guest(id=inst.uuid, name=inst.name or inst.uuid,
                 status=_STATUS.get(inst.vm_state, inst.vm_state.upper()), host=inst.host,
                 task_state=inst.task_state)


def add_parsers(actions) -> None:
    parser = actions.add_parser("drain", help="disable a compute host and migrate every "
                                "guest off it (live, or cold for a stopped one)")
    # dests are prefixed: SubCommandAttr refuses names of config options.
    parser.add_argument("drain_host", metavar="HOST")
    parser.add_argument("--reason", dest="drain_reason", default="drained",
                        help="why (shown in service list)")
    parser.add_argument("--max-concurrent", dest="drain_max", type=int, default=None,
                        help="migrations at once (default: [DEFAULT] "
                             "max_concurrent_live_migrations)")
    parser.set_defaults(func=drain)


class DirectBackend:
    """A drain's view of the cloud from the control plane."""

    def __init__(self, conf: cfg.ConfigOpts, conductor) -> None:
        self.conf = conf
        self.conductor = conductor

    def disable(self, host: str, reason: str) -> None:
        db_api.service_set_disabled(host, COMPUTE, True, reason)

    def guests(self, host: str) -> list[Guest]:
        return [_guest(i) for i in db_api.instance_get_all_by_host(host)]

    def guest(self, guest_id: str) -> Guest | None:
        try:
            return _guest(db_api.instance_get(guest_id))
        except exception.InstanceNotFound:
            return None

    def awaiting_confirmation(self, host: str) -> list[Guest]:
        found: dict[str, Guest] = {}
        for migration in mig_db.migration_list(host=host, status=rs_db.FINISHED):
            if migration.source_host != host or migration.instance_uuid in found \
                    or migration.migration_type not in (rs_db.COLD, rs_db.RESIZE):
                continue
            guest = self.guest(migration.instance_uuid)
            if guest is not None:
                found[guest.id] = dataclasses.replace(guest,
                                                      awaiting=migration.migration_type)
        return list(found.values())

    def _start(self, guest: Guest, operation: st.Operation, expected_vm_state,
               start: Callable[[RequestContext], None],
               undo: Callable[[str], None], action: str | None = None,
               volumes_settled: bool = True) -> None:
        """Put the server's task on as the API does, record the action and
        call the conductor; everything undone when it cannot be reached.
        ``volumes_settled``: refuse while a volume of it is being attached
        or detached (a move; the API's confirmResize does not ask)."""
        ctxt = get_admin_context()
        volume = vdb.unsettled_volume(guest.id) if volumes_settled else None
        if volume is not None:
            raise DrainRefused("its volume %s is %s" % (volume.id, volume.status))
        try:
            db_api.instance_update(guest.id, {
                "task_state": operation.task_state,
                "task_deadline": task_deadline(self.conf, operation.task_state)},
                expected_vm_state=expected_vm_state, expected_task_state=None)
        except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
            raise DrainRefused(str(exc)) from None
        db_api.action_start(guest.id, action or operation.action, ctxt.request_id,
                            ctxt.user_id, ctxt.project_id)
        try:
            start(ctxt)
        except exception.MessagingException as exc:
            undo(str(exc))
            db_api.instance_update(guest.id, {"task_state": None, "task_deadline": None},
                                   expected_task_state=operation.task_state)
            db_api.action_finish(guest.id, ctxt.request_id, message="Error")
            raise DrainRefused("the conductor could not be reached: %s" % exc) from None

    def live_migrate(self, guest: Guest) -> None:
        migration = None

        def start(ctxt: RequestContext) -> None:
            nonlocal migration
            migration = mig_db.migration_create(guest.id, guest.host, None, LIVE)
            self.conductor.live_migrate_instance(ctxt, guest.id, migration.uuid, None,
                                                 False)

        def undo(why: str) -> None:
            mig_db.migration_update(migration.uuid, {"status": mig_db.ERROR,
                                                     "error_reason": why})
        self._start(guest, OPERATION, OPERATION.from_vm_states, start, undo)

    def cold_migrate(self, guest: Guest) -> None:
        migration = None

        def start(ctxt: RequestContext) -> None:
            nonlocal migration
            inst = db_api.instance_get(guest.id)
            migration = mig_db.migration_create(guest.id, guest.host, None, rs_db.COLD)
            self.conductor.resize_instance(ctxt, guest.id, migration.uuid,
                                           dict(inst.flavor or {}), None, COLD_ACTION)

        def undo(why: str) -> None:
            mig_db.migration_update(migration.uuid, {"status": rs_db.ERROR,
                                                     "error_reason": why})
        self._start(guest, COLD, (st.STOPPED,), start, undo, COLD_ACTION)

    def confirm_migration(self, guest: Guest) -> None:
        migration = next((m for m in mig_db.migration_list(guest.id, status=rs_db.FINISHED)
                          if m.migration_type == rs_db.COLD), None)
        if migration is None:
            raise DrainRefused("no cold migration of it waits for confirmation")

        def start(ctxt: RequestContext) -> None:
            mig_db.migration_update(migration.uuid, {"status": rs_db.CONFIRMING})
            self.conductor.confirm_resize(ctxt, guest.id, migration.uuid)

        def undo(why: str) -> None:
            mig_db.migration_update(migration.uuid, {"status": rs_db.FINISHED})
        self._start(guest, CONFIRM, (st.RESIZED,), start, undo, volumes_settled=False)

    def outcome(self, guest: Guest, host: str) -> Outcome:
        try:
            inst = db_api.instance_get(guest.id)
        except exception.InstanceNotFound:
            return Outcome(done=True, reason="the server was deleted during the drain")
        cold = guest.cold
        migrations = mig_db.migration_list(guest.id,
                                           migration_type=rs_db.COLD if cold else LIVE)
        newest = migrations[0] if migrations else None
        if inst.vm_state == st.RESIZED and inst.task_state is None:
            return Outcome(done=False, verify=True)
        if cold and inst.task_state is not None:
            return Outcome(done=False, progress=inst.task_state)
        if inst.task_state == st.MIGRATING:
            progress = None
            if newest is not None:
                progress = format_progress(
                    {"status": newest.status,
                     **{f + "_bytes": getattr(newest, f) for f in mig_db.PROGRESS_FIELDS}})
            return Outcome(done=False, progress=progress)
        if inst.host != host:
            return Outcome(done=True, moved=True)
        if newest is not None and newest.status not in MIGRATION_ENDED:
            # The flow clears the task before it writes the record's end.
            return Outcome(done=False)
        reason = "the migration ended and the server is still on the host"
        if newest is not None and newest.status in (mig_db.ERROR, mig_db.CANCELLED):
            reason = "migration %s: %s" % (newest.status, newest.error_reason or "no reason")
        return Outcome(done=True, reason=reason)


def drain(conf: cfg.ConfigOpts) -> int:
    from conductor.rpcapi import ConductorAPI
    from flotilla import rpc
    from flotilla.rpc.upgrade import version_cap
    db_api.configure(conf)
    schema.check_synced()
    args = conf.category
    db_api.service_get(args.drain_host, COMPUTE)     # ServiceNotFound: one line, 1
    transport = rpc.get_transport(conf)
    try:
        conductor = ConductorAPI(transport, version_cap(conf, "conductor"))
        drainer = Drainer(DirectBackend(conf, conductor),
                          max_concurrent=args.drain_max or conf.max_concurrent_live_migrations,
                          poll_interval=conf.drain_poll_interval, out=sys.stdout)
        result = drainer.drain(args.drain_host, args.drain_reason)
    finally:
        transport.cleanup()
    return 0 if result.ok else 1
