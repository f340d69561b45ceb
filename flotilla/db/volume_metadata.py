"""Metadata of volumes and snapshots (Cinder's ``.../metadata`` routes).

A change reads and writes the row's metadata in one transaction that locks
the row (``SELECT ... FOR UPDATE`` where the database has it), so two
tenants setting different keys at once both keep theirs.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from flotilla.db.engine import session_scope
from flotilla.db.models import Volume, VolumeSnapshot
from flotilla.db.types import utcnow

MODELS = {"volume": Volume, "snapshot": VolumeSnapshot}


class MetadataTooLarge(ValueError):
    """The change would leave more items than allowed."""


def metadata_change(kind: str, row_id: str, updates: Mapping[str, str | None],
                    replace: bool = False, limit: int | None = None) -> dict | None:
    """The metadata of the live ``kind`` (volume or snapshot) ``row_id``
    after merging ``updates`` (None removes a key) into it, or after
    replacing it with them; None when there is no such live row.
    MetadataTooLarge, and nothing changes, when the result would hold more
    than ``limit`` items."""
    model = MODELS[kind]
    with session_scope() as session:
        row = session.scalars(sa.select(model).where(
            model.id == row_id, model.deleted.is_(False)).with_for_update()).first()
        if row is None:
            return None
        metadata = {} if replace else dict(row.metadata_ or {})
        for key, value in updates.items():
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        if limit is not None and len(metadata) > limit:
            raise MetadataTooLarge("%d items, more than %d" % (len(metadata), limit))
        row.metadata_ = metadata
        row.updated_at = utcnow()
        session.flush()
        return dict(metadata)


def image_metadata_change(volume_id: str, updates: Mapping[str, str | None]
                          ) -> dict | None:
    """A live volume's image metadata (``volume_image_metadata``) after
    merging ``updates`` into it (None removes a key), read and written
    under the row's lock as :func:`metadata_change`; None when there is no
    such live volume."""
    with session_scope() as session:
        row = session.scalars(sa.select(Volume).where(
            Volume.id == volume_id, Volume.deleted.is_(False)).with_for_update()).first()
        if row is None:
            return None
        metadata = dict(row.image_metadata or {})
        for key, value in updates.items():
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        row.image_metadata = metadata
        row.updated_at = utcnow()
        session.flush()
        return dict(metadata)
