"""``os-extend`` of an in-use volume (microversion 3.42): may the server's
host do it, and the start of the conductor's flow
(conductor/flows/volume_extend.py).

The host can when its compute agent runs code that serves compute RPC
1.11 (its service's reported version) and its driver says
``supports_extend_volume`` (the compute node's reported capabilities; the
libvirt driver on QEMU and the fake driver do, libvirt's test driver does
not), and when no RPC API the flow uses is capped below what it sends
(``[upgrade_levels]``). Every refusal is a 400 naming the reason, as
Cinder's refusal of an in-use extend; a server in a task, or in a state
whose guest cannot learn the size (suspended, shelved), is a 409.
"""

from __future__ import annotations

import logging

from api import errors
from api.state import APIState
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from flotilla.rpc import upgrade

LOG = logging.getLogger(__name__)

COMPUTE_VERSION = "1.11"
CAPABILITY = "supports_extend_volume"
#: Servers whose guest learns the size online (running) or at its next
#: start (stopped). Not a paused one: the extend resumes a guest an I/O
#: error paused, which must never resume a server its user paused.
VM_STATES = (st.ACTIVE, st.STOPPED)


def _refuse(volume_id: str, reason: str) -> errors.APIError:
    return errors.bad_request(
        "Invalid volume: Volume %s is in-use and cannot be extended online: %s; "
        "detach it, extend it and attach it again." % (volume_id, reason))


def host_can_extend(state: APIState, host: str) -> str | None:
    """None when ``host`` can extend an attached volume online, else why not."""
    if not state.conductor.can_extend_volume():
        return "the conductors are capped below RPC 1.11"
    if not state.volume.can_extend_online():
        return "the volume services are capped below RPC 1.3"
    if not state.compute.can_extend_volume():
        return "the compute agents are capped below RPC 1.11"
    refusal = upgrade.compute_host_refusal(host, COMPUTE_VERSION)
    if refusal is not None:
        return refusal
    try:
        node = db.compute_node_get(host)
    except exception.NotFound:
        return "the server's host has not reported its hypervisor"
    if CAPABILITY not in (node.capabilities or ()):
        return "the hypervisor of the server's host cannot grow a disk under a guest"
    return None


def attachment_to_extend(state: APIState, row):
    """The attachment of the in-use volume ``row`` whose server's host will
    extend it; raises the API error that refuses it."""
    attachments = [a for a in vdb.attachments_of_volume(row.id) if a.status == "attached"]
    if len(attachments) != 1:
        raise _refuse(row.id, "it has %d attachments" % len(attachments))
    attachment = attachments[0]
    try:
        inst = db.instance_get(attachment.instance_uuid)
    except exception.NotFound:
        raise _refuse(row.id, "its server is gone") from None
    if inst.task_state is not None or inst.vm_state not in VM_STATES or not inst.host:
        raise errors.conflict("Cannot 'extend_volume' of volume %s while its server %s is "
                              "in vm_state %s%s" % (row.id, inst.uuid, inst.vm_state,
                                                    ", task_state %s" % inst.task_state
                                                    if inst.task_state else ""))
    reason = host_can_extend(state, inst.host)
    if reason is not None:
        raise _refuse(row.id, reason)
    return attachment


def start(state: APIState, ctx, row, attachment, new_size: int, old: int) -> None:
    """The volume is extending (new size): record the server's action and
    cast the flow; a conductor that cannot be reached ends it in-use again
    (it is attached) with the old size and the reason
    (:func:`flotilla.db.volumes.volume_extend_failed`)."""
    db.action_start(attachment.instance_uuid, "extend_volume", ctx.request_id,
                    ctx.user_id, ctx.project_id)
    try:
        state.conductor.extend_volume(ctx, attachment.instance_uuid, row.id,
                                      attachment.uuid, new_size, old)
    except exception.MessagingException as exc:
        LOG.error("could not cast extend_volume for %s: %s", row.id, exc)
        vdb.volume_extend_failed(row.id, old, "the conductor could not be reached")
        db.action_finish(attachment.instance_uuid, ctx.request_id, message="Error")
        return
    LOG.info("volume %s extending online from %d to %d GiB (server %s)", row.id, old,
             new_size, attachment.instance_uuid)
