"""Routes of the Block Storage v3 subset (/volume)."""

from __future__ import annotations

from api.state import APIState
from api.volume import (
    actions,
    attachments,
    metadata,
    pools,
    quotas,
    resources,
    services,
    snapshots,
)

V3 = resources.V3


def add_routes(app, state: APIState) -> None:
    add = app.add_route
    add("/volume", resources.Versions(state))
    add(V3, resources.Version(state))
    add(V3 + "/volumes", resources.Volumes(state))
    add(V3 + "/volumes/detail", resources.Volumes(state, detail=True))
    add(V3 + "/volumes/{volume_id}", resources.Volume(state))
    add(V3 + "/volumes/summary", resources.Summary(state))
    add(V3 + "/volumes/{volume_id}/action", actions.VolumeAction(state))
    add(V3 + "/volumes/{volume_id}/metadata", metadata.Metadata(state, "volume"))
    add(V3 + "/volumes/{volume_id}/metadata/{key}", metadata.MetadataItem(state, "volume"))
    add(V3 + "/types", resources.Types(state))
    add(V3 + "/types/{type_id}", resources.Type(state))
    add(V3 + "/os-quota-sets/{project_id}", quotas.QuotaSet(state))
    add(V3 + "/os-quota-sets/{project_id}/defaults", quotas.QuotaDefaults(state))
    add(V3 + "/limits", quotas.Limits(state))
    add(V3 + "/snapshots", snapshots.Snapshots(state))
    add(V3 + "/snapshots/detail", snapshots.Snapshots(state, detail=True))
    add(V3 + "/snapshots/{snapshot_id}", snapshots.Snapshot(state))
    add(V3 + "/snapshots/{snapshot_id}/metadata", metadata.Metadata(state, "snapshot"))
    add(V3 + "/snapshots/{snapshot_id}/metadata/{key}",
        metadata.MetadataItem(state, "snapshot"))
    add(V3 + "/scheduler-stats/get_pools", pools.Pools(state))
    add(V3 + "/os-services", services.Services(state))
    add(V3 + "/attachments", attachments.Attachments(state))
    add(V3 + "/attachments/detail", attachments.Attachments(state, detail=True))
    add(V3 + "/attachments/{attachment_id}", attachments.Attachment(state))
    add(V3 + "/os-services/{action}", services.Service(state))
