"""What a resize or cold migration (conductor/flows/resize.py) needs to
know about a server's volumes and about a resize to its own host.

Volumes (issue 12): a server with volumes attached is moved like any other;
its volumes are NBD exports of the volume host, reached from every compute
host, so nothing is copied and no export changes. The destination defines
the guest with the same connections and device names (compute RPC 1.10
``finish_resize`` with ``block_device_mapping``), and so does the source
when a revert brings the kept guest back (``finish_revert_resize``). The
attachments name the host the guest runs on: flotilla.db.resizes switches
them with the instance, in the same transactions (to the destination when
the resize finishes, back to the source when it is reverted). Agents capped
below 1.10 would define the guest without its volumes: such a resize is
refused before anything changes.

Same host: with ``[DEFAULT] allow_resize_to_same_host`` (read here, on the
conductor) the scheduler may choose the server's own host for a resize,
never for a cold migration (as Nova); the migrate data then says
``same_host`` and the driver keeps the original aside on that host.
"""

from __future__ import annotations

from conductor.flows import volume as volume_flows
from flotilla import exception
from flotilla.db import volumes as volumes_db
from flotilla.objects import BlockDeviceMapping


def block_device_mapping(instance_uuid: str) -> list[BlockDeviceMapping]:
    """The volume disks the guest keeps (their recorded connections and
    devices; the boot volume with boot index 0)."""
    return volume_flows.attached_volumes(instance_uuid)


def check_volumes_movable(compute, instance_uuid: str) -> None:
    """MigrationPreCheckError when the server has volumes attached and the
    agents cannot be sent the 1.10 forms that carry them."""
    if volumes_db.attachments_of_instance(instance_uuid) \
            and not compute.can_move_volumes_cold():
        raise exception.MigrationPreCheckError(
            instance_uuid=instance_uuid,
            reason="it has volumes attached and the compute agents are capped below "
            "RPC 1.10 (they would define it without its volumes)")


def same_host_allowed(conf, action: str) -> bool:
    """Whether a resize (not a cold migration) may stay on its host."""
    return action == "resize" and bool(conf.allow_resize_to_same_host)
