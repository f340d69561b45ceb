"""Block Storage v3 volume actions (``POST /volume/v3/{project}/volumes/{id}/action``).

Each action is one handler in :attr:`VolumeAction.handlers`, keyed by the
action's name (the body's only key); an unknown name is 400 naming it.

``os-extend`` (``openstack volume set --size N``):

* ``new_size`` a whole number of GiB, larger than the volume's size and at
  most [volume] max_size_gb (400 naming ``new_size``), the growth within
  the project's ``gigabytes`` quota (413) and the free space of the
  volume's host (413 naming it, flotilla.volume_placement);
* the volume must be ``available``, or ``in-use`` from microversion 3.42
  on (400 otherwise, as Cinder). An in-use volume is extended online only
  when the host of the server it is attached to can do it: its compute
  agent serves RPC 1.11 and reports the driver capability
  ``supports_extend_volume``, and neither compute (1.11), conductor (1.11)
  nor volume (1.3) RPC is capped below what the flow sends; otherwise 400
  with the reason (detach, extend, attach again);
* the status becomes ``extending`` and the size the new one in one
  compare-and-swap within the quota lock. An available volume: the volume
  service is cast ``extend_volume``; it grows the pool volume and makes it
  ``available`` (or ``error_extending`` with the old size back). An in-use
  one: the action ``extend_volume`` is recorded on the server and the
  conductor cast ``extend_volume``, whose flow
  (conductor/flows/volume_extend.py) grows and re-exports the volume, has
  the guest see the new size and makes it ``in-use`` again (or
  ``error_extending`` with the old size and the reason).

``os-set_bootable``, ``os-set_image_metadata``, ``os-unset_image_metadata``,
``os-show_image_metadata``, ``os-update_readonly_flag``, ``os-reset_status``
and ``os-retype``: api/volume/volume_flags.py states their rules.
``os-volume_upload_image`` (``openstack image create --volume V NAME``):
the volume (``available``, or ``in-use`` with ``force``) is copied into a
new image by its volume service, status ``uploading`` meanwhile
(api.volume.upload states the rules).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import falcon

from api import errors, policy, validation
from api.state import APIState, ctxt
from api.volume import online_extend, resources, snapshots, upload, volume_flags
from flotilla import exception
from flotilla import states as st
from flotilla.db import volumes as vdb
from flotilla.volume_placement import NotEnoughSpace, space_guard

LOG = logging.getLogger(__name__)

ACTION = {"type": "object", "minProperties": 1, "maxProperties": 1,
          "additionalProperties": True}
#: The microversion from which an in-use volume may be extended (Cinder's).
ONLINE_EXTEND_VERSION = (3, 42)
EXTEND = {"type": "object", "required": ["new_size"], "additionalProperties": False,
          "properties": {"new_size": {}}}


def _new_size(value, conf) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.bad_request("Invalid input for field/attribute new_size. "
                                 "It must be an integer number of GiB.")
    try:
        size = int(value)
    except ValueError:
        raise errors.bad_request("Invalid input for field/attribute new_size. Value: %s. "
                                 "It must be an integer number of GiB."
                                 % str(value)[:32]) from None
    if size > conf.volume.max_size_gb:
        raise errors.bad_request("Invalid input for field/attribute new_size. Value: %d. "
                                 "It must be at most %d (GiB, [volume] max_size_gb)."
                                 % (size, conf.volume.max_size_gb))
    return size


class VolumeAction:
    policy_rules = {"POST": policy.MEMBER}

    def __init__(self, state: APIState) -> None:
        self.state = state
        #: action name -> handler(req, resp, ctx, volume row, action arguments)
        self.handlers: dict[str, Callable] = {
            "os-extend": self.os_extend,
        }
        # os-set_bootable, image metadata, read-only flag, reset status, retype
        self.handlers.update(volume_flags.VolumeFlags(state).handlers())
        self.handlers[upload.NAME] = functools.partial(upload.upload_image, state)

    def on_post(self, req, resp, volume_id: str) -> None:
        ctx = ctxt(req)
        row = resources.get_volume(ctx, volume_id)
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size), ACTION)
        (name, args), = body.items()
        handler = self.handlers.get(name)
        if handler is None:
            raise errors.bad_request("Invalid input for field/attribute %s. This volume "
                                     "action is not supported." % str(name)[:64])
        handler(req, resp, ctx, row, args)

    def os_extend(self, req, resp, ctx, row, args) -> None:
        args = validation.validate(args, EXTEND)
        self.extend(req, resp, ctx, row, _new_size(args["new_size"], self.state.conf))

    def extend(self, req, resp, ctx, row, new_size: int) -> None:
        conf = self.state.conf
        if new_size <= row.size_gb:
            raise errors.bad_request("Invalid input for field/attribute new_size. Value: %d. "
                                     "New size for extend must be greater than current "
                                     "size. (current: %d, extended: %d)."
                                     % (new_size, row.size_gb, new_size))
        attachment = None
        if row.status == st.VOLUME_IN_USE:
            if snapshots.request_version(req) < ONLINE_EXTEND_VERSION:
                raise errors.bad_request(
                    "Invalid volume: Volume status must be available to extend, but "
                    "current status is: in-use (an in-use volume needs microversion "
                    "3.42 or later).")
            attachment = online_extend.attachment_to_extend(self.state, row)
        elif row.status != st.VOLUME_AVAILABLE:
            raise errors.bad_request("Invalid volume: Volume status must be available "
                                     "to extend, but current status is: %s." % row.status)
        try:
            # The growth takes space on the volume's host (413 naming it),
            # checked in the reservation's transaction, serialised per host
            # with creates and other extends.
            old = vdb.volume_extend_begin(
                row.id, new_size, row.status, resources.volume_defaults(conf),
                vdb.deadline(conf.volume.operation_timeout),
                check=space_guard(conf, row.host, new_size - row.size_gb)
                if row.host else None)
        except NotEnoughSpace as exc:
            raise errors.APIError(413, "Insufficient free space for volume extension: "
                                  "%s" % exc, fault="overLimit") from None
        except vdb.VolumeOverQuota as exc:
            raise errors.APIError(413, "VolumeSizeExceedsAvailableQuota: Requested volume "
                                  "size for field/attribute new_size exceeds the "
                                  "gigabytes quota: %s" % str(exc),
                                  fault="overLimit") from None
        except (vdb.VolumeStatusConflict, exception.Invalid) as exc:
            raise errors.bad_request("Invalid volume: %s." % str(exc)) from None
        if attachment is not None:
            online_extend.start(self.state, ctx, row, attachment, new_size, old)
            resp.status = falcon.HTTP_202
            return
        try:
            self.state.volume.extend_volume(ctx, row.host, row.id, new_size, old)
        except exception.MessagingException as exc:
            LOG.error("could not cast extend_volume for %s: %s", row.id, exc)
            vdb.volume_extend_failed(row.id, old, "the volume service could not be reached")
        LOG.info("volume %s extending from %d to %d GiB", row.id, old, new_size)
        resp.status = falcon.HTTP_202
