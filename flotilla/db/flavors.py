"""Flavors: the sizes an instance can be booted with.

A private flavor (``is_public`` False) is usable only by the projects on its
access list (``flavor_projects``, Nova's os-flavor-access) and by admins.

Deleting a flavor is a soft delete that frees its name and flavorid for a
new flavor; instances keep their own snapshot of the flavor they booted
with, so they are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Flavor, FlavorProject
from flotilla.db.types import utcnow

_UPDATABLE = frozenset({"name", "is_public", "disabled", "description",
                        "extra_specs"})


def flavor_create(values: Mapping[str, Any]) -> Flavor:
    """Create a flavor; ``flavorid`` defaults to ``name``.

    Conflict if a live flavor has the same name or flavorid.
    """
    values = dict(values)
    values.setdefault("flavorid", values.get("name"))
    unknown = set(values) - {a.key for a in sa.inspect(Flavor).column_attrs} \
        | (set(values) & {"id", "deleted", "deleted_at"})
    if unknown:
        raise exception.Invalid(reason="cannot set flavor fields %s" % sorted(unknown))
    flavor = Flavor(**values)
    try:
        with session_scope() as session:
            session.add(flavor)
    except sa.exc.IntegrityError:
        raise exception.Conflict(
            reason="a flavor named %s or with id %s exists"
            % (values.get("name"), values.get("flavorid"))) from None
    return flavor


def flavor_get(flavorid: str) -> Flavor:
    """The live flavor with this flavorid, or FlavorNotFound."""
    return _get_by(Flavor.flavorid == flavorid, flavorid)


def flavor_get_by_name(name: str) -> Flavor:
    return _get_by(Flavor.name == name, name)


def flavor_get_all(include_disabled: bool = False,
                   is_public: bool | None = None,
                   accessible_to: str | None = None) -> list[Flavor]:
    """Live flavors, smallest first (by memory, then vcpus, then name).

    ``accessible_to`` (a project id) limits the list to the public flavors
    and the private ones that project has access to."""
    query = sa.select(Flavor).where(Flavor.deleted == 0).order_by(
        Flavor.memory_mb, Flavor.vcpus, Flavor.name)
    if not include_disabled:
        query = query.where(Flavor.disabled.is_(False))
    if is_public is not None:
        query = query.where(Flavor.is_public.is_(is_public))
    if accessible_to is not None:
        query = query.where(sa.or_(Flavor.is_public.is_(True), Flavor.id.in_(
            sa.select(FlavorProject.flavor_id).where(
                FlavorProject.project_id == accessible_to))))
    with session_scope() as session:
        return list(session.scalars(query))


def flavor_update(flavorid: str, values: Mapping[str, Any]) -> Flavor:
    """Change a flavor's name, visibility, disabled flag, description or
    extra_specs. Sizes never change: that would lie about running guests."""
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise exception.Invalid(reason="cannot change flavor fields %s" % sorted(unknown))
    try:
        with session_scope() as session:
            flavor = _get(session, Flavor.flavorid == flavorid, flavorid)
            for key, value in values.items():
                setattr(flavor, key, value)
    except sa.exc.IntegrityError:
        raise exception.Conflict(
            reason="a flavor named %s exists" % values.get("name")) from None
    return flavor


def flavor_destroy(flavorid: str) -> None:
    """Soft-delete a flavor (FlavorNotFound if there is no live one)."""
    with session_scope() as session:
        flavor = _get(session, Flavor.flavorid == flavorid, flavorid)
        flavor.deleted = flavor.id
        flavor.deleted_at = utcnow()


def _get_by(clause, ident: str) -> Flavor:
    with session_scope() as session:
        return _get(session, clause, ident)


def _get(session, clause, ident: str) -> Flavor:
    flavor = session.scalars(
        sa.select(Flavor).where(clause, Flavor.deleted == 0)).one_or_none()
    if flavor is None:
        raise exception.FlavorNotFound(flavor_id=ident)
    return flavor


# --- access lists --------------------------------------------------------------

def flavor_access_list(flavorid: str) -> list[str]:
    """Projects with access to a (private) flavor."""
    with session_scope() as session:
        flavor = _get(session, Flavor.flavorid == flavorid, flavorid)
        return list(session.scalars(sa.select(FlavorProject.project_id).where(
            FlavorProject.flavor_id == flavor.id).order_by(FlavorProject.project_id)))


def flavor_access_add(flavorid: str, project_id: str) -> None:
    """Grant ``project_id`` access (Conflict if it has it already)."""
    try:
        with session_scope() as session:
            flavor = _get(session, Flavor.flavorid == flavorid, flavorid)
            session.add(FlavorProject(flavor_id=flavor.id, project_id=project_id))
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="project %s already has access to flavor %s"
                                 % (project_id, flavorid)) from None


def flavor_access_remove(flavorid: str, project_id: str) -> None:
    """Revoke access (NotFound when the project had none)."""
    with session_scope() as session:
        flavor = _get(session, Flavor.flavorid == flavorid, flavorid)
        removed = session.execute(sa.delete(FlavorProject).where(
            FlavorProject.flavor_id == flavor.id,
            FlavorProject.project_id == project_id)).rowcount
    if not removed:
        raise exception.NotFound("Project %s has no access to flavor %s"
                                 % (project_id, flavorid))


def flavor_accessible(flavor: Flavor, project_id: str | None) -> bool:
    """Whether ``project_id`` may use ``flavor`` (public, or on its list)."""
    if flavor.is_public:
        return True
    if project_id is None:
        return False
    with session_scope() as session:
        return session.scalar(sa.select(FlavorProject.id).where(
            FlavorProject.flavor_id == flavor.id,
            FlavorProject.project_id == project_id)) is not None
