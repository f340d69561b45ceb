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
