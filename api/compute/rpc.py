"""The API's casts to the conductor, and the image form compute agents use.

The conductor methods ``build_instances(ctxt, instance_uuids, request_spec,
image)`` and ``delete_instance(ctxt, instance_uuid)`` are the interface
agreed with the conductor; while conductor.rpcapi.ConductorAPI does not
carry them yet, the same cast is sent through its RPC client directly, so
the message on the bus is identical.
"""

from __future__ import annotations

from flotilla import images
from flotilla.context import RequestContext


def build_instances(conductor, ctxt: RequestContext, instance_uuids: list[str],
                    request_spec: dict, image: dict) -> None:
    method = getattr(conductor, "build_instances", None)
    if method is not None:
        method(ctxt, instance_uuids, request_spec, image)
        return
    conductor.client.cast(ctxt, "build_instances", instance_uuids=instance_uuids,
                          request_spec=request_spec, image=image)


def delete_instance(conductor, ctxt: RequestContext, instance_uuid: str) -> None:
    method = getattr(conductor, "delete_instance", None)
    if method is not None:
        method(ctxt, instance_uuid)
        return
    conductor.client.cast(ctxt, "delete_instance", instance_uuid=instance_uuid)


def compute_image(conf, image_id: str) -> dict:
    """``{"id", "source", "sha256", "disk_format"}`` for the agents."""
    return images.compute_image_ref(conf, image_id)
