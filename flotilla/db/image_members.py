"""Image members: the projects a ``shared`` image is shared with.

Rules (Glance's): a member starts ``pending`` and may set its own status
to ``accepted``, ``rejected`` or back to ``pending``; a member sees the
image whatever its status, and lists it by default once accepted; a
project is a member once (Conflict); deleting the image deletes its
members.
"""

from __future__ import annotations

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import ImageMember

STATUSES = ("pending", "accepted", "rejected")


class MemberNotFound(exception.NotFound):
    msg_fmt = "%(member)s is not a member of image %(image_id)s."


def _detach(session, row: ImageMember) -> ImageMember:
    session.flush()
    session.expunge(row)
    return row


def member_create(image_id: str, member: str) -> ImageMember:
    try:
        with session_scope() as session:
            row = ImageMember(image_id=image_id, member=member, status="pending")
            session.add(row)
            return _detach(session, row)
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="%s is already a member of image %s"
                                 % (member, image_id)) from None


def member_get(image_id: str, member: str) -> ImageMember:
    with session_scope() as session:
        row = session.scalars(sa.select(ImageMember).where(
            ImageMember.image_id == image_id, ImageMember.member == member)).one_or_none()
        if row is None:
            raise MemberNotFound(member=member, image_id=image_id)
        return _detach(session, row)


def member_list(image_id: str) -> list[ImageMember]:
    with session_scope() as session:
        rows = list(session.scalars(sa.select(ImageMember).where(
            ImageMember.image_id == image_id).order_by(ImageMember.id)))
        return [_detach(session, row) for row in rows]


def member_set_status(image_id: str, member: str, status: str) -> ImageMember:
    if status not in STATUSES:
        raise exception.Invalid(reason="status must be one of %s" % ", ".join(STATUSES))
    with session_scope() as session:
        row = session.scalars(sa.select(ImageMember).where(
            ImageMember.image_id == image_id, ImageMember.member == member)).one_or_none()
        if row is None:
            raise MemberNotFound(member=member, image_id=image_id)
        row.status = status
        return _detach(session, row)


def member_delete(image_id: str, member: str) -> None:
    with session_scope() as session:
        result = session.execute(sa.delete(ImageMember).where(
            ImageMember.image_id == image_id, ImageMember.member == member))
        if result.rowcount == 0:
            raise MemberNotFound(member=member, image_id=image_id)


def is_member(image_id: str, project_id: str | None) -> bool:
    if project_id is None:
        return False
    with session_scope() as session:
        return session.scalar(sa.select(ImageMember.id).where(
            ImageMember.image_id == image_id,
            ImageMember.member == project_id)) is not None


def shared_with(project_id: str | None, statuses) -> sa.ColumnElement:
    """A clause on Image.id: shared with ``project_id`` in one of
    ``statuses`` (for the image list)."""
    from flotilla.db.models import Image
    return Image.id.in_(sa.select(ImageMember.image_id).where(
        ImageMember.member == project_id, ImageMember.status.in_(list(statuses))))
