"""``flotilla-manage host``: operator actions on a whole compute host.

    flotilla-manage host drain HOST [--reason R] [--max-concurrent N]

``drain`` is flotilla.drain run from the control plane: the database for
reads and the service's disable, the conductor (RPC) for each guest's live
migration, started as the API starts one (the server's task ``migrating``,
an accepted migration record, the action ``live-migration`` under its own
request id). At most ``[DEFAULT] max_concurrent_live_migrations`` at once
(or ``--max-concurrent``); exit status 1 when a guest could not be moved,
each named with the migration's recorded reason.
"""

from __future__ import annotations

import sys

from oslo_config import cfg

from flotilla import exception
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import api as db_api
from flotilla.db import migration_records as mig_db
from flotilla.db import schema
from flotilla.db.instances import MIGRATION_ENDED
from flotilla.deadlines import task_deadline
from flotilla.drain import Drainer, DrainRefused, Guest, Outcome, format_progress

HELP = "hosts: drain HOST (disable it, live-migrate every guest off it)"

COMPUTE = "flotilla-compute"
LIVE = "live-migration"
OPERATION = st.operation("live_migrate")

# vm_state to the API's status name, for the drain's messages.
_STATUS = {st.ACTIVE: "ACTIVE", st.PAUSED: "PAUSED", st.STOPPED: "SHUTOFF",
           st.SUSPENDED: "SUSPENDED", st.ERROR: "ERROR", st.BUILDING: "BUILD"}


def add_parsers(actions) -> None:
    parser = actions.add_parser("drain", help="disable a compute host and live-migrate "
                                "every guest off it")
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
        return [Guest(id=i.uuid, name=i.name or i.uuid,
                      status=_STATUS.get(i.vm_state, i.vm_state.upper()), host=i.host,
                      task_state=i.task_state)
                for i in db_api.instance_get_all_by_host(host)]

    def live_migrate(self, guest: Guest) -> None:
        ctxt = get_admin_context()
        try:
            db_api.instance_update(guest.id, {
                "task_state": OPERATION.task_state,
                "task_deadline": task_deadline(self.conf, OPERATION.task_state)},
                expected_vm_state=OPERATION.from_vm_states, expected_task_state=None)
        except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
            raise DrainRefused(str(exc)) from None
        migration = mig_db.migration_create(guest.id, guest.host, None, LIVE)
        db_api.action_start(guest.id, OPERATION.action, ctxt.request_id, ctxt.user_id,
                            ctxt.project_id)
        try:
            self.conductor.live_migrate_instance(ctxt, guest.id, migration.uuid, None, False)
        except exception.MessagingException as exc:
            mig_db.migration_update(migration.uuid, {"status": mig_db.ERROR,
                                                     "error_reason": str(exc)})
            db_api.instance_update(guest.id, {"task_state": None, "task_deadline": None},
                                   expected_task_state=OPERATION.task_state)
            db_api.action_finish(guest.id, ctxt.request_id, message="Error")
            raise DrainRefused("the conductor could not be reached: %s" % exc) from None

    def outcome(self, guest: Guest, host: str) -> Outcome:
        try:
            inst = db_api.instance_get(guest.id)
        except exception.InstanceNotFound:
            return Outcome(done=True, reason="the server was deleted during the drain")
        migrations = mig_db.migration_list(guest.id, migration_type=LIVE)
        newest = migrations[0] if migrations else None
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
        reason = "the live migration ended and the server is still on the host"
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
