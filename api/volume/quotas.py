"""Block Storage quota sets and limits: volumes, snapshots and gigabytes
(volumes' and snapshots' sizes together, as Cinder counts them).

A project's readers see its quotas (another project's: 403, admins excepted);
only admins change them. ``usage=True`` adds what is in use.
"""

from __future__ import annotations

from api import errors, policy, validation
from api.state import APIState, ctxt
from api.volume.resources import volume_defaults
from flotilla.conf.quota import VOLUME_RESOURCES
from flotilla.db import volumes as vdb

UPDATE = {"type": "object", "required": ["quota_set"], "additionalProperties": False,
          "properties": {"quota_set": {
              "type": "object", "additionalProperties": False,
              "properties": {**{r: {"type": ["integer", "string"]} for r in VOLUME_RESOURCES},
                             "tenant_id": {"type": "string"}, "id": {"type": "string"}}}}}
# Shown for the clients' columns; not enforced (no backups or groups yet).
_UNSUPPORTED = {"backups": -1, "backup_gigabytes": -1,
                "per_volume_gigabytes": -1, "groups": -1}


def _check_project(ctx, project_id: str) -> None:
    if not ctx.is_admin and project_id != ctx.project_id:
        raise errors.forbidden("Policy doesn't allow volume quotas of another project "
                               "to be shown.")


class QuotaSet:
    policy_rules = {"GET": policy.READER, "PUT": policy.ADMIN}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, project_id: str) -> None:
        ctx = ctxt(req)
        _check_project(ctx, project_id)
        limits = vdb.volume_limits(project_id, volume_defaults(self.state.conf))
        quota = {"id": project_id, **_UNSUPPORTED, **limits}
        if validation.to_bool(req.get_param("usage") or "False"):
            usage = vdb.volume_usage(project_id)
            quota = {"id": project_id,
                     **{r: {"limit": v, "in_use": 0, "reserved": 0, "allocated": 0}
                        for r, v in _UNSUPPORTED.items()},
                     **{r: {"limit": limits[r], "in_use": usage[r], "reserved": 0,
                            "allocated": 0} for r in VOLUME_RESOURCES}}
        resp.media = {"quota_set": quota}

    def on_put(self, req, resp, project_id: str) -> None:
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size), UPDATE)
        changes = {}
        for resource in VOLUME_RESOURCES:
            if resource in body["quota_set"]:
                value = body["quota_set"][resource]
                try:
                    limit = int(value)
                except (TypeError, ValueError):
                    raise errors.bad_request("Invalid input for field/attribute %s. "
                                             "It must be an integer." % resource) from None
                if limit < -1:
                    raise errors.bad_request("Invalid input for field/attribute %s. "
                                             "It must be -1 or at least 0." % resource)
                changes[resource] = limit
        vdb.set_volume_limits(project_id, changes)
        limits = vdb.volume_limits(project_id, volume_defaults(self.state.conf))
        resp.media = {"quota_set": {**_UNSUPPORTED, **limits}}


class QuotaDefaults:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, project_id: str) -> None:
        resp.media = {"quota_set": {"id": project_id, **_UNSUPPORTED,
                                    **volume_defaults(self.state.conf)}}


class Limits:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        limits = vdb.volume_limits(ctx.project_id, volume_defaults(self.state.conf))
        usage = vdb.volume_usage(ctx.project_id)
        resp.media = {"limits": {"rate": [], "absolute": {
            "maxTotalVolumes": limits["volumes"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "totalVolumesUsed": usage["volumes"],
            "totalGigabytesUsed": usage["gigabytes"],
            "maxTotalSnapshots": limits["snapshots"],
            "totalSnapshotsUsed": usage["snapshots"],
            "maxTotalBackups": -1, "totalBackupsUsed": 0,
            "maxTotalBackupGigabytes": -1, "totalBackupGigabytesUsed": 0}}}
