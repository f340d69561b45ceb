"""What a compute agent may ask of the conductor, as the host it proved to be.

An agent's request names its host and is signed with that host's key
(flotilla.rpc.signing.Keyring), so ``ctxt.agent_host`` is who is asking;
``None`` is the control plane (or a cloud without keys, which trusts its
bus), and is not restricted here. The rules:

* an agent acts on the instances recorded on its own host, and on an
  instance a migration in progress moves to or from its host;
* an agent reports its own service, node and resources only;
* flows are started by the control plane (the API), never by an agent.

A refused request raises Forbidden naming the host and what it asked; the
RPC server logs it and answers the agent with the error.
"""

from __future__ import annotations

from flotilla import exception
from flotilla.context import RequestContext
from flotilla.db import api as db


def check_instance(ctxt: RequestContext, instance_uuid: str,
                   read_deleted: bool = False) -> None:
    """The agent may act on ``instance_uuid``."""
    host = ctxt.agent_host
    if host is None:
        return
    try:
        instance = db.instance_get(instance_uuid, read_deleted=read_deleted)
    except exception.InstanceNotFound:
        raise exception.Forbidden(
            reason="compute host %s asked about instance %s, which is not on it"
            % (host, instance_uuid)) from None
    if instance.host == host or host in db.migration_hosts_in_progress(instance_uuid):
        return
    raise exception.Forbidden(reason="compute host %s may not act on instance %s of "
                              "another host" % (host, instance_uuid))


def check_host(ctxt: RequestContext, host: str, what: str) -> None:
    """The agent speaks for ``host`` (its heartbeat, node, instances list)."""
    if ctxt.agent_host is not None and ctxt.agent_host != host:
        raise exception.Forbidden(reason="compute host %s may not %s for host %s"
                                  % (ctxt.agent_host, what, host))


def check_control_plane(ctxt: RequestContext, what: str) -> None:
    """Only the control plane (the API) may ask for ``what``."""
    if ctxt.agent_host is not None:
        raise exception.Forbidden(reason="compute host %s may not %s"
                                  % (ctxt.agent_host, what))


def check_migration_source(ctxt: RequestContext, migration_uuid: str, what: str,
                           instance_uuid: str | None = None,
                           host: str | None = None) -> None:
    """Only the source host of migration ``migration_uuid`` (of
    ``instance_uuid`` when given; reported by ``host`` when given) may
    ``what``: its progress and outcome are the source's to tell."""
    try:
        migration = db.migration_get(migration_uuid)
    except exception.MigrationNotFound:
        raise exception.Forbidden(reason="no migration %s to %s" % (migration_uuid, what)) \
            from None
    if instance_uuid is not None and migration.instance_uuid != instance_uuid:
        raise exception.Forbidden(reason="migration %s is not one of instance %s"
                                  % (migration_uuid, instance_uuid))
    if host is not None and migration.source_host != host:
        raise exception.Forbidden(reason="host %s is not the source of migration %s"
                                  % (host, migration_uuid))
    if ctxt.agent_host is not None and ctxt.agent_host != migration.source_host:
        raise exception.Forbidden(reason="compute host %s may not %s for migration %s "
                                  "from host %s" % (ctxt.agent_host, what, migration_uuid,
                                                    migration.source_host))
