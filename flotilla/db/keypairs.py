"""Key pairs: per user, named, soft-deleted.

Rules:

* a name is unique among one user's live key pairs (the unique constraint
  on (user_id, name, deleted) with ``deleted`` 0 while live, the row id once
  deleted);
* creation is checked against the user's ``key_pairs`` limit in the same
  transaction as the insert, after :func:`flotilla.db.quotas.lock_user`,
  so concurrent creates of one user can never overshoot it;
* listing is by creation order (id), paged with a marker that is a key
  pair's name (MarkerNotFound when the user has no such key pair).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa

from flotilla import exception
from flotilla.db import quotas
from flotilla.db.engine import session_scope
from flotilla.db.models import KeyPair
from flotilla.db.servers import MarkerNotFound
from flotilla.db.types import utcnow


def _live(user_id: str, name: str | None = None):
    query = sa.select(KeyPair).where(KeyPair.user_id == user_id, KeyPair.deleted == 0)
    if name is not None:
        query = query.where(KeyPair.name == name)
    return query


def key_pair_create(user_id: str, name: str, public_key: str, fingerprint: str,
                    key_type: str,
                    limits_for: Callable[[object], Mapping[str, int]]) -> KeyPair:
    """Insert a key pair if the user has room for it (``limits_for(session)``
    gives the user's effective limits); KeyPairExists for a name taken,
    KeypairLimitExceeded when full."""
    try:
        with session_scope() as session:
            quotas.lock_user(session, user_id)
            try:
                quotas.check(limits_for(session),
                             {"key_pairs": quotas.count_key_pairs(user_id, session)},
                             {"key_pairs": 1})
            except exception.OverQuota:
                raise exception.KeypairLimitExceeded() from None
            if session.scalars(_live(user_id, name)).first() is not None:
                raise exception.KeyPairExists(key_name=name)
            row = KeyPair(user_id=user_id, name=name, public_key=public_key,
                          fingerprint=fingerprint, type=key_type)
            session.add(row)
    except sa.exc.IntegrityError:
        # The unique constraint has the last word (a writer that did not
        # take the lock).
        raise exception.KeyPairExists(key_name=name) from None
    return row


def key_pair_get(user_id: str, name: str) -> KeyPair:
    with session_scope() as session:
        row = session.scalars(_live(user_id, name)).first()
    if row is None:
        raise exception.KeypairNotFound(name=name, user_id=user_id)
    return row


def key_pair_get_all(user_id: str, limit: int | None = None,
                     marker: str | None = None) -> list[KeyPair]:
    """The user's live key pairs, oldest first, after the one named
    ``marker``."""
    query = _live(user_id).order_by(KeyPair.id)
    with session_scope() as session:
        if marker is not None:
            mark = session.scalar(sa.select(KeyPair.id).where(
                KeyPair.user_id == user_id, KeyPair.deleted == 0,
                KeyPair.name == marker))
            if mark is None:
                raise MarkerNotFound(marker=marker)
            query = query.where(KeyPair.id > mark)
        if limit is not None:
            query = query.limit(limit)
        return list(session.scalars(query))


def key_pair_destroy(user_id: str, name: str) -> None:
    """Soft-delete the user's key pair ``name``; KeypairNotFound if none."""
    with session_scope() as session:
        row = session.scalars(_live(user_id, name)).first()
        if row is None:
            raise exception.KeypairNotFound(name=name, user_id=user_id)
        row.deleted = row.id
        row.deleted_at = utcnow()
