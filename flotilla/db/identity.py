"""Identity: projects, users, role assignments and tokens.

Rules:

* passwords are stored as ``scrypt$N$r$p$salt$hash`` (base64 parts;
  hashlib.scrypt, a memory-hard KDF, 16-byte random salt) and compared in
  constant time; a password is never stored, returned or logged;
* a token is 32 random bytes (``secrets.token_urlsafe``) handed to the user
  once; only its sha256 is stored, so a database dump yields no usable
  token; it expires at ``expires_at`` and can be revoked;
* a token is only as good as the rights behind it, checked live at every
  validation (:func:`token_validate`): its user and project must still be
  enabled, and its roles are those it was issued with that the user still
  holds (on the project, or on the system for a system-scoped token; none
  left: the token is refused). So whatever path removes a role or disables
  a user or project (the manage CLI, the identity admin API) takes effect
  on the next request, with nothing to revoke;
* roles are ``admin``, ``manager``, ``member``, ``reader`` and ``service``
  (other OpenStack services calling in), a fixed set; admin implies
  manager, manager implies member and member implies reader (Keystone's
  default implied roles), and a token carries the expanded list;
* a role is held on a project, or on the system (Keystone's system scope:
  the whole deployment, used by identity administrators and readers);
* every change of a user's roles or enabled flag, or of a project's
  enabled flag, goes through a function here (role_add, role_remove,
  system_role_add, system_role_remove, user_update, project_update), so the
  token check sees it at once;
* projects and users are addressed by id or by name (names are unique).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
import uuid as uuidlib

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Project, RoleAssignment, SystemRoleAssignment, Token, User
from flotilla.db.types import utcnow

ROLES = ("admin", "manager", "member", "reader", "service")
_IMPLIED = {"admin": ("admin", "manager", "member", "reader"),
            "manager": ("manager", "member", "reader"),
            "member": ("member", "reader"), "reader": ("reader",),
            "service": ("service",)}
_SCRYPT_R, _SCRYPT_P = 8, 1


class ProjectNotFound(exception.NotFound):
    msg_fmt = "Project %(project)s could not be found."


class UserNotFound(exception.NotFound):
    msg_fmt = "User %(user)s could not be found."


class TokenNotFound(exception.NotFound):
    msg_fmt = "The token is unknown, expired or revoked."


# --- passwords ---------------------------------------------------------------

def hash_password(password: str, n: int = 2 ** 14) -> str:
    """A salted scrypt hash of ``password`` in the stored format."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, _SCRYPT_R, _SCRYPT_P)
    return "scrypt$%d$%d$%d$%s$%s" % (n, _SCRYPT_R, _SCRYPT_P, _b64(salt),
                                      _b64(digest))


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 2 ** 20, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# A hash to compare against when the user does not exist, so that a wrong
# user name costs as much time as a wrong password (no user enumeration).
_DUMMY_HASH: str | None = None


# --- projects ----------------------------------------------------------------

def project_create(name: str, description: str | None = None,
                   project_id: str | None = None, enabled: bool = True) -> Project:
    """Create a project (Conflict if the name is taken)."""
    project = Project(id=project_id or uuidlib.uuid4().hex, name=name,
                      description=description, enabled=enabled)
    try:
        with session_scope() as session:
            session.add(project)
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="a project named %s exists" % name) from None
    return project


def project_get(ref: str) -> Project:
    """The project with id or name ``ref``, or ProjectNotFound."""
    with session_scope() as session:
        return _project(session, ref)


def project_get_all() -> list[Project]:
    with session_scope() as session:
        return list(session.scalars(sa.select(Project).order_by(Project.name)))


def project_update(ref: str, values: dict) -> Project:
    """Change a project's name, description or enabled flag (Conflict if
    the new name is taken)."""
    allowed = {"name", "description", "enabled"}
    if set(values) - allowed:
        raise exception.Invalid(reason="a project has only %s" % ", ".join(sorted(allowed)))
    try:
        with session_scope() as session:
            project = _project(session, ref)
            for key, value in values.items():
                setattr(project, key, value)
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="a project named %s exists"
                                 % values.get("name")) from None
    return project


def project_delete(ref: str) -> None:
    """Delete a project with its role assignments and tokens."""
    with session_scope() as session:
        project = _project(session, ref)
        session.execute(sa.delete(RoleAssignment)
                        .where(RoleAssignment.project_id == project.id))
        session.execute(sa.delete(Token).where(Token.project_id == project.id))
        session.execute(sa.update(User).where(User.default_project_id == project.id)
                        .values(default_project_id=None))
        session.delete(project)


def project_set_enabled(ref: str, enabled: bool) -> None:
    """Enable or disable a project; tokens scoped to a disabled project stop
    working at once (checked at validation)."""
    with session_scope() as session:
        _project(session, ref).enabled = enabled


def _project(session, ref: str) -> Project:
    project = session.scalars(sa.select(Project).where(
        sa.or_(Project.id == ref, Project.name == ref))
        .order_by((Project.id == ref).desc()).limit(1)).one_or_none()
    if project is None:
        raise ProjectNotFound(project=ref)
    return project


# --- users -------------------------------------------------------------------

def user_create(name: str, password: str | None,
                default_project: str | None = None,
                scrypt_n: int = 2 ** 14, enabled: bool = True,
                extra: dict | None = None) -> User:
    """Create a user (Conflict if the name is taken). A user without a
    password cannot authenticate until one is set."""
    with session_scope() as session:
        project_id = _project(session, default_project).id if default_project else None
    user = User(id=uuidlib.uuid4().hex, name=name,
                password_hash=hash_password(password, scrypt_n) if password else None,
                default_project_id=project_id, enabled=enabled, extra=extra or None)
    try:
        with session_scope() as session:
            session.add(user)
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="a user named %s exists" % name) from None
    return user


def user_get(ref: str) -> User:
    """The user with id or name ``ref``, or UserNotFound."""
    with session_scope() as session:
        return _user(session, ref)


def user_get_all() -> list[User]:
    with session_scope() as session:
        return list(session.scalars(sa.select(User).order_by(User.name)))


def user_update(ref: str, values: dict, scrypt_n: int = 2 ** 14) -> User:
    """Change a user's name, enabled flag, default project, password or
    extra attributes (``extra`` replaces them). A new password revokes
    every token the user holds."""
    allowed = {"name", "enabled", "default_project_id", "password", "extra"}
    if set(values) - allowed:
        raise exception.Invalid(reason="a user has only %s" % ", ".join(sorted(allowed)))
    values = dict(values)
    password = values.pop("password", None)
    try:
        with session_scope() as session:
            user = _user(session, ref)
            if values.get("default_project_id"):
                values["default_project_id"] = _project(
                    session, values["default_project_id"]).id
            for key, value in values.items():
                setattr(user, key, value)
            if password is not None:
                user.password_hash = hash_password(password, scrypt_n)
                session.execute(sa.update(Token).where(Token.user_id == user.id)
                                .values(revoked=True))
    except sa.exc.IntegrityError:
        raise exception.Conflict(reason="a user named %s exists"
                                 % values.get("name")) from None
    return user


def user_delete(ref: str) -> None:
    """Delete a user; their role assignments and tokens go with them."""
    with session_scope() as session:
        user = _user(session, ref)
        session.execute(sa.delete(RoleAssignment).where(RoleAssignment.user_id == user.id))
        session.execute(sa.delete(Token).where(Token.user_id == user.id))
        session.delete(user)


def user_set_password(ref: str, password: str, scrypt_n: int = 2 ** 14) -> None:
    """Replace a user's password and revoke every token they hold."""
    password_hash = hash_password(password, scrypt_n)
    with session_scope() as session:
        user = _user(session, ref)
        user.password_hash = password_hash
        session.execute(sa.update(Token).where(Token.user_id == user.id)
                        .values(revoked=True))


def user_set_enabled(ref: str, enabled: bool) -> None:
    """Enable or disable a user; a disabled user's tokens stop working at
    once (checked at validation) and it cannot authenticate."""
    with session_scope() as session:
        _user(session, ref).enabled = enabled


def authenticate(name: str, password: str, by_id: bool = False) -> User | None:
    """The enabled user ``name`` (or id) if ``password`` is theirs, else None.

    A missing user costs the same scrypt work as a wrong password.
    """
    global _DUMMY_HASH
    with session_scope() as session:
        column = User.id if by_id else User.name
        user = session.scalars(sa.select(User).where(column == name)).one_or_none()
    if user is None or not user.enabled or not user.password_hash:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_hex(8))
        verify_password(password, _DUMMY_HASH)
        return None
    return user if verify_password(password, user.password_hash) else None


def _user(session, ref: str) -> User:
    user = session.scalars(sa.select(User).where(
        sa.or_(User.id == ref, User.name == ref))
        .order_by((User.id == ref).desc()).limit(1)).one_or_none()
    if user is None:
        raise UserNotFound(user=ref)
    return user


# --- roles -------------------------------------------------------------------

def role_add(user: str, project: str, role: str) -> None:
    """Grant ``role`` on ``project`` to ``user`` (idempotent)."""
    if role not in ROLES:
        raise exception.Invalid(reason="role must be one of %s" % ", ".join(ROLES))
    with session_scope() as session:
        user_id, project_id = _user(session, user).id, _project(session, project).id
        exists = session.scalar(sa.select(RoleAssignment.id).where(
            RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id,
            RoleAssignment.role == role))
        if exists is None:
            session.add(RoleAssignment(user_id=user_id, project_id=project_id, role=role))


def role_remove(user: str, project: str, role: str) -> None:
    """Revoke a role; NotFound if it was not granted."""
    with session_scope() as session:
        user_id, project_id = _user(session, user).id, _project(session, project).id
        result = session.execute(sa.delete(RoleAssignment).where(
            RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id,
            RoleAssignment.role == role))
        if result.rowcount == 0:
            raise exception.NotFound("User %s has no role %s on project %s"
                                     % (user, role, project))


def role_list(user: str | None = None, project: str | None = None) -> list[tuple]:
    """(user name, project name, role) of the matching assignments."""
    query = (sa.select(User.name, Project.name, RoleAssignment.role)
             .join(User, User.id == RoleAssignment.user_id)
             .join(Project, Project.id == RoleAssignment.project_id)
             .order_by(User.name, Project.name, RoleAssignment.role))
    with session_scope() as session:
        if user is not None:
            query = query.where(RoleAssignment.user_id == _user(session, user).id)
        if project is not None:
            query = query.where(RoleAssignment.project_id == _project(session, project).id)
        return [tuple(row) for row in session.execute(query)]


def role_assignments(user_id: str | None = None, project_id: str | None = None,
                     role: str | None = None) -> list[tuple[str, str | None, str]]:
    """(user id, project id or None for the system, role) of the matching
    assignments, project ones first; ``project_id="system"`` selects the
    system's only."""
    rows: list[tuple[str, str | None, str]] = []
    with session_scope() as session:
        if project_id != "system":
            query = sa.select(RoleAssignment.user_id, RoleAssignment.project_id,
                              RoleAssignment.role).order_by(RoleAssignment.id)
            if user_id is not None:
                query = query.where(RoleAssignment.user_id == user_id)
            if project_id is not None:
                query = query.where(RoleAssignment.project_id == project_id)
            if role is not None:
                query = query.where(RoleAssignment.role == role)
            rows.extend(tuple(r) for r in session.execute(query))
        if project_id is None or project_id == "system":
            query = sa.select(SystemRoleAssignment.user_id, SystemRoleAssignment.role
                              ).order_by(SystemRoleAssignment.id)
            if user_id is not None:
                query = query.where(SystemRoleAssignment.user_id == user_id)
            if role is not None:
                query = query.where(SystemRoleAssignment.role == role)
            rows.extend((u, None, r) for u, r in session.execute(query))
    return rows


def system_role_add(user: str, role: str) -> None:
    """Grant ``role`` on the system to ``user`` (idempotent)."""
    if role not in ROLES:
        raise exception.Invalid(reason="role must be one of %s" % ", ".join(ROLES))
    with session_scope() as session:
        user_id = _user(session, user).id
        exists = session.scalar(sa.select(SystemRoleAssignment.id).where(
            SystemRoleAssignment.user_id == user_id, SystemRoleAssignment.role == role))
        if exists is None:
            session.add(SystemRoleAssignment(user_id=user_id, role=role))


def system_role_remove(user: str, role: str) -> None:
    """Revoke a system role; NotFound if it was not granted."""
    with session_scope() as session:
        user_id = _user(session, user).id
        result = session.execute(sa.delete(SystemRoleAssignment).where(
            SystemRoleAssignment.user_id == user_id, SystemRoleAssignment.role == role))
        if result.rowcount == 0:
            raise exception.NotFound("User %s has no role %s on the system" % (user, role))


def system_roles_for(user_id: str) -> list[str]:
    """The system roles (implied ones included) of a user."""
    with session_scope() as session:
        return expand_roles(session.scalars(sa.select(SystemRoleAssignment.role).where(
            SystemRoleAssignment.user_id == user_id)))


def projects_for(user_id: str) -> list[Project]:
    """The projects a user holds any role on."""
    with session_scope() as session:
        return list(session.scalars(
            sa.select(Project).where(Project.id.in_(
                sa.select(RoleAssignment.project_id).where(
                    RoleAssignment.user_id == user_id))).order_by(Project.name)))


def roles_for(user_id: str, project_id: str) -> list[str]:
    """The roles (implied ones included) of a user on a project."""
    with session_scope() as session:
        granted = session.scalars(sa.select(RoleAssignment.role).where(
            RoleAssignment.user_id == user_id,
            RoleAssignment.project_id == project_id))
        return expand_roles(granted)


def expand_roles(roles) -> list[str]:
    result: list[str] = []
    for role in roles:
        for implied in _IMPLIED.get(role, (role,)):
            if implied not in result:
                result.append(implied)
    return sorted(result, key=lambda r: ROLES.index(r) if r in ROLES else 99)


# --- tokens ------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_issue(user_id: str, project_id: str | None, roles: list[str],
                ttl: int, system: bool = False) -> tuple[str, Token]:
    """A new token (returned once, never stored) and its row; ``system``:
    scoped to the system (then ``project_id`` is None)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = Token(id=_token_hash(token), user_id=user_id, project_id=project_id,
                roles=list(roles), issued_at=now, system=system,
                expires_at=now + datetime.timedelta(seconds=ttl))
    with session_scope() as session:
        session.add(row)
    return token, row


def token_validate(token: str) -> Token:
    """The live token, or TokenNotFound (unknown, expired, revoked, its user
    or project disabled or gone, or none of its roles still granted).

    The returned row is a detached copy whose ``roles`` are the roles it was
    issued with that are still granted now (see the module rules)."""
    if not token or len(token) > 512:
        raise TokenNotFound()
    with session_scope() as session:
        row = session.get(Token, _token_hash(token))
        if row is None or row.revoked or row.expires_at <= utcnow():
            raise TokenNotFound()
        user = session.get(User, row.user_id)
        if user is None or not user.enabled:
            raise TokenNotFound()
        roles: list[str] = []
        if row.project_id is not None:
            project = session.get(Project, row.project_id)
            if project is None or not project.enabled:
                raise TokenNotFound()
            granted = set(expand_roles(session.scalars(
                sa.select(RoleAssignment.role).where(
                    RoleAssignment.user_id == row.user_id,
                    RoleAssignment.project_id == row.project_id))))
        elif row.system:
            granted = set(expand_roles(session.scalars(
                sa.select(SystemRoleAssignment.role).where(
                    SystemRoleAssignment.user_id == row.user_id))))
        else:
            granted = set()
        if row.project_id is not None or row.system:
            roles = [r for r in (row.roles or []) if r in granted]
            if not roles:
                raise TokenNotFound()
        return Token(id=row.id, user_id=row.user_id, project_id=row.project_id,
                     roles=roles, issued_at=row.issued_at,
                     expires_at=row.expires_at, revoked=False, system=row.system)


def token_revoke(token: str) -> None:
    """Revoke a token (TokenNotFound if it is not live)."""
    token_validate(token)
    with session_scope() as session:
        session.execute(sa.update(Token).where(Token.id == _token_hash(token))
                        .values(revoked=True))


def token_purge_expired(now: datetime.datetime | None = None) -> int:
    """Delete expired tokens; return how many."""
    with session_scope() as session:
        result = session.execute(sa.delete(Token).where(Token.expires_at < (now or utcnow())))
        return result.rowcount
