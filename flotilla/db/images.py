"""Images: every read and write of the ``images`` table.

Rules:

* an image is live while ``deleted`` is False; deleting is a soft delete,
  and a deleted image is never returned (ImageNotFound);
* status changes are compare-and-swap on the expected status
  (:func:`image_update` with ``expected_status``), so two concurrent uploads
  of one image cannot both start: the loser gets ImageStatusConflict;
* ``properties`` holds the user's free-form properties (Glance's "extra
  properties") plus Flotilla's own keys, which all start with ``_``
  (:data:`INTERNAL_PROPERTIES`: the md5 checksum Glance clients expect,
  ``protected``, ``os_hidden`` and ``tags``, which have no column); users may not set keys
  starting with ``_``;
* listing uses keyset pagination on (sort key, id), so pages stay stable
  while images are added;
* a project's images count against its image quota while they are live,
  snapshots and backups included: :func:`image_create_within_quota` checks
  and inserts in one transaction, serialised per project;
* a snapshot's data is uploaded by a compute agent through a signed URL
  that works once: :func:`image_arm_upload` records the sha256 of its
  nonce, :func:`image_claim_upload` moves the image from queued to saving
  only for that nonce and forgets it in the same UPDATE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db import quotas as quotas_db
from flotilla.db.engine import session_scope
from flotilla.db.models import Image
from flotilla.db.types import utcnow

MD5_KEY = "_md5"
PROTECTED_KEY = "_protected"
TAGS_KEY = "_tags"
HIDDEN_KEY = "_hidden"
UPLOAD_KEY = "_upload"  # which API process is receiving the data (saving)
KILLED_REASON_KEY = "_killed_reason"   # why an image was killed
INTERNAL_PROPERTIES = frozenset({MD5_KEY, PROTECTED_KEY, TAGS_KEY, HIDDEN_KEY,
                                 UPLOAD_KEY, KILLED_REASON_KEY})
# The volume an image is being copied from (os-volume_upload_image), so that
# the reaper and a restarted volume service find the image of an upload.
VOLUME_UPLOAD_KEY = "_volume_upload"
INTERNAL_PROPERTIES = INTERNAL_PROPERTIES | {VOLUME_UPLOAD_KEY}

_SETTABLE = frozenset({"id", "name", "owner", "status", "disk_format",
                       "container_format", "size", "virtual_size", "checksum", "min_ram",
                       "min_disk", "visibility", "properties", "location",
                       "upload_token"})
SORT_KEYS = ("created_at", "updated_at", "name", "size", "status", "id",
             "disk_format", "container_format", "min_ram", "min_disk")


@dataclasses.dataclass
class ImageQuery:
    """What a list asks for. ``project_id`` None with ``all_projects`` means
    every image (admin); otherwise the images ``project_id`` may see:
    public, community and its own. ``visibility`` restricts further
    ("all" or None: public + own, plus community only when owned, as
    Glance lists them)."""

    project_id: str | None = None
    all_projects: bool = False
    visibility: str | None = None
    names: Sequence[str] | None = None
    ids: Sequence[str] | None = None
    status: str | None = None
    owner: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    limit: int = 25
    marker: str | None = None
    # Shared images listed to their members: of these member statuses.
    member_status: Sequence[str] = ("accepted",)


def image_create(values: Mapping[str, Any]) -> Image:
    """Create an image row (status queued unless given). Conflict if the id
    is taken, even by a deleted image (Glance never reuses ids)."""
    unknown = set(values) - _SETTABLE
    if unknown:
        raise exception.Invalid(reason="cannot set image fields %s" % sorted(unknown))
    image = Image(**dict(values))
    try:
        with session_scope() as session:
            session.add(image)
    except sa.exc.IntegrityError:
        raise exception.Conflict(
            reason="an image with id %s exists" % values.get("id")) from None
    return image


def image_create_within_quota(values: Mapping[str, Any], limit: int) -> Image:
    """Create an image of ``values["owner"]`` unless that project already
    owns ``limit`` live images (-1: no limit): OverQuota then. The count
    and the insert are one transaction, serialised per project."""
    owner = values.get("owner")
    unknown = set(values) - _SETTABLE
    if unknown:
        raise exception.Invalid(reason="cannot set image fields %s" % sorted(unknown))
    try:
        with session_scope() as session:
            if limit >= 0 and owner is not None:
                quotas_db.lock_project(session, "images/" + owner)
                used = session.scalar(sa.select(sa.func.count()).select_from(Image).where(
                    Image.owner == owner, Image.deleted.is_(False)))
                if used >= limit:
                    raise exception.OverQuota(
                        resources="images",
                        detail="the project owns %d of its %d images" % (used, limit))
            image = Image(**dict(values))
            session.add(image)
    except sa.exc.IntegrityError:
        raise exception.Conflict(
            reason="an image with id %s exists" % values.get("id")) from None
    return image


def image_count(owner: str) -> int:
    """Live images owned by ``owner`` (what its image quota counts)."""
    with session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Image).where(
            Image.owner == owner, Image.deleted.is_(False)))


def image_get(image_id: str, read_deleted: bool = False) -> Image:
    """The live image ``image_id`` (or a deleted one too, with
    ``read_deleted``), or ImageNotFound."""
    with session_scope() as session:
        if read_deleted:
            image = session.get(Image, image_id)
            if image is None:
                raise exception.ImageNotFound(image_id=image_id)
            return image
        return _get(session, image_id)


def image_arm_upload(image_id: str, token_hash: str) -> None:
    """Let the upload URL whose nonce hashes to ``token_hash`` (and no
    other) upload the data of the queued image ``image_id``.
    ImageStatusConflict when it is not queued, ImageNotFound when gone."""
    image_update(image_id, {"upload_token": token_hash}, expected_status="queued")


def image_claim_upload(image_id: str, token_hash: str) -> Image:
    """Start the upload armed with ``token_hash``: queued → saving and the
    token forgotten, in one UPDATE (so a URL uploads once). ImageNotFound
    when the image is gone, ImageStatusConflict when it is not queued or
    the token is not (or no longer) the armed one."""
    with session_scope() as session:
        result = session.execute(
            sa.update(Image).where(Image.id == image_id, Image.deleted.is_(False),
                                   Image.status == "queued",
                                   Image.upload_token == token_hash)
            .values(status="saving", upload_token=None, updated_at=utcnow()),
            execution_options={"synchronize_session": False})
        current = _get(session, image_id)
        if result.rowcount != 1:
            raise exception.ImageStatusConflict(
                image_id=image_id, actual=current.status,
                expected="queued, with this upload URL unused")
        return current


def images_of_instance(owner: str, instance_uuid: str,
                       image_type: str | None = None,
                       backup_type: str | None = None) -> list[Image]:
    """Live images of ``owner`` made from ``instance_uuid`` (property
    ``instance_uuid``), of ``image_type`` and ``backup_type`` when given,
    oldest first."""
    with session_scope() as session:
        rows = list(session.scalars(
            sa.select(Image).where(Image.owner == owner, Image.deleted.is_(False))
            .order_by(Image.created_at.asc(), Image.id.asc())))
    wanted = {"instance_uuid": instance_uuid}
    if image_type is not None:
        wanted["image_type"] = image_type
    if backup_type is not None:
        wanted["backup_type"] = backup_type
    return [i for i in rows
            if all((i.properties or {}).get(k) == v for k, v in wanted.items())]


def image_update(image_id: str, values: Mapping[str, Any],
                 expected_status: str | Sequence[str] | None = None) -> Image:
    """Change fields of a live image. With ``expected_status`` the change
    only happens if the image's status is (one of) it, checked in the same
    UPDATE statement, else ImageStatusConflict."""
    unknown = set(values) - (_SETTABLE - {"id"})
    if unknown:
        raise exception.Invalid(reason="cannot change image fields %s" % sorted(unknown))
    values = dict(values, updated_at=utcnow())
    with session_scope() as session:
        stmt = sa.update(Image).where(Image.id == image_id,
                                      Image.deleted.is_(False))
        if expected_status is not None:
            expected = ([expected_status] if isinstance(expected_status, str)
                        else list(expected_status))
            stmt = stmt.where(Image.status.in_(expected))
        result = session.execute(stmt.values(**values))
        if result.rowcount != 1:
            current = _get(session, image_id)  # raises ImageNotFound
            raise exception.ImageStatusConflict(
                image_id=image_id, actual=current.status,
                expected=expected_status)
        session.expire_all()
        return _get(session, image_id)


def image_destroy(image_id: str) -> Image:
    """Soft-delete a live image (status becomes deleted); returns the
    deleted row, whose ``location`` tells the caller which file to remove."""
    with session_scope() as session:
        image = _get(session, image_id)
        image.deleted = True
        image.deleted_at = utcnow()
        image.status = "deleted"
        return image


def image_get_saving() -> list[Image]:
    """Every live image whose data is being uploaded (status saving)."""
    with session_scope() as session:
        return list(session.scalars(sa.select(Image).where(
            Image.deleted.is_(False), Image.status == "saving")))


def image_get_all(query: ImageQuery) -> list[Image]:
    """One page of live images matching ``query`` (see ImageQuery); a
    marker that is not a live image the caller may see is ImageNotFound."""
    if query.sort_key not in SORT_KEYS:
        raise exception.Invalid(reason="sort key %s is not one of %s"
                                % (query.sort_key, ", ".join(SORT_KEYS)))
    if query.sort_dir not in ("asc", "desc"):
        raise exception.Invalid(reason="sort direction must be asc or desc")
    stmt = sa.select(Image).where(Image.deleted.is_(False))
    stmt = stmt.where(*_visibility_clauses(query))
    if query.names is not None:
        stmt = stmt.where(Image.name.in_(list(query.names)))
    for column, value in (("status", query.status),
                          ("owner", query.owner),
                          ("disk_format", query.disk_format),
                          ("container_format", query.container_format)):
        if value is not None:
            stmt = stmt.where(getattr(Image, column) == value)
    if query.ids is not None:
        stmt = stmt.where(Image.id.in_(list(query.ids)))
    key = _sort_expr(query.sort_key)
    ascending = query.sort_dir == "asc"
    with session_scope() as session:
        if query.marker is not None:
            marker = session.scalars(
                sa.select(Image).where(Image.id == query.marker,
                                       Image.deleted.is_(False),
                                       *_visibility_clauses(query))).one_or_none()
            if marker is None:
                raise exception.ImageNotFound(image_id=query.marker)
            mark = session.scalar(sa.select(key).where(Image.id == marker.id))
            if ascending:
                stmt = stmt.where(sa.or_(key > mark,
                                         sa.and_(key == mark, Image.id > marker.id)))
            else:
                stmt = stmt.where(sa.or_(key < mark,
                                         sa.and_(key == mark, Image.id < marker.id)))
        order = (key.asc(), Image.id.asc()) if ascending else (key.desc(), Image.id.desc())
        stmt = stmt.order_by(*order)
        if not query.properties:
            stmt = stmt.limit(query.limit)
        images = list(session.scalars(stmt))
    # Property filters compare JSON values, which SQLite and PostgreSQL
    # query differently; filtering here keeps one code path. The page is cut
    # after filtering so a page is still full.
    if query.properties:
        images = [i for i in images
                  if all(str((i.properties or {}).get(k)) == v
                         for k, v in query.properties.items())]
    return images[:query.limit]


def _sort_expr(sort_key: str):
    column = getattr(Image, sort_key)
    # NULLs sort differently per database; a keyset needs one total order.
    if sort_key in ("name", "disk_format", "container_format"):
        return sa.func.coalesce(column, "")
    if sort_key == "size":
        return sa.func.coalesce(column, -1)
    if sort_key == "updated_at":
        return sa.func.coalesce(column, Image.created_at)
    return column


def _visibility_clauses(query: ImageQuery) -> list:
    if query.all_projects and query.visibility in (None, "all"):
        return []
    if query.all_projects:
        return [Image.visibility == query.visibility]
    from flotilla.db.image_members import shared_with
    own = Image.owner == query.project_id
    shared = sa.and_(Image.visibility == "shared",
                     shared_with(query.project_id, query.member_status))
    if query.visibility in (None, "all"):
        # Glance: community images are listed only to their owner unless
        # asked for explicitly; shared ones to their members once accepted
        # (member_status says which).
        return [sa.or_(Image.visibility == "public", own, shared)]
    if query.visibility in ("public", "community"):
        return [Image.visibility == query.visibility]
    if query.visibility == "shared":
        return [sa.or_(sa.and_(Image.visibility == "shared", own), shared)]
    return [Image.visibility == query.visibility, own]


def _get(session, image_id: str) -> Image:
    image = session.scalars(sa.select(Image).where(
        Image.id == image_id, Image.deleted.is_(False))).one_or_none()
    if image is None:
        raise exception.ImageNotFound(image_id=image_id)
    return image
