"""The schema of the cloud's state, as SQLAlchemy 2 declarative models.

Rules shared by every table:

* timestamps are timezone-aware UTC (:class:`~flotilla.db.types.UTCDateTime`);
* free-form documents (flavor snapshots, metadata, image properties) are
  ``JSON``, which both SQLite and PostgreSQL store;
* rows that users see and may delete (instances, images, flavors, volumes)
  are soft-deleted, so the history of a cloud stays auditable;
* the migrations under ``migrations/versions`` must describe exactly these
  models: a unit test compares them and fails on any drift.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flotilla.db.types import UTCDateTime, utcnow

# Named constraints, so a later migration can drop or alter them by name on
# PostgreSQL, and SQLite batch migrations can recreate them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = sa.Integer  # surrogate integer keys
UUID_LEN = 36
NAME_LEN = 255
STATE_LEN = 32


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime.datetime: UTCDateTime()}

    # Columns never sent over RPC or printed (secrets).
    _private_columns: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able values, keyed by column name.

        Datetimes become ISO 8601 strings (with the ``+00:00`` offset); JSON
        columns are copied so the caller cannot mutate the ORM object.
        """
        result: dict[str, Any] = {}
        for attr in sa.inspect(type(self)).column_attrs:
            column = attr.columns[0]
            if column.name in self._private_columns:
                continue
            value = getattr(self, attr.key)
            if isinstance(value, datetime.datetime):
                value = value.isoformat()
            elif isinstance(value, (dict, list)):
                value = _copy_json(value)
            result[column.name] = value
        return result

    def __repr__(self) -> str:
        keys = [c.name for c in self.__table__.primary_key.columns]
        ident = ", ".join("%s=%r" % (k, getattr(self, k, None)) for k in keys)
        return "<%s %s>" % (type(self).__name__, ident)


def _copy_json(value):
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


class TimestampMixin:
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(
        onupdate=utcnow)


class SoftDeleteMixin:
    """``deleted`` is False while the row is live; deleting sets deleted_at."""

    deleted: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[datetime.datetime | None]


class FlowStateMixin:
    """Where a conductor flow keeps its state (see conductor/flows/runner.py):
    on the instance action of its request, or on a migration record.

    ``flow`` names the flow (None: no flow ran here); ``flow_status`` is
    running, waiting (for an agent's report), reverting, completed, failed
    or aborted; ``flow_owner`` the conductor host running it (it resumes its
    own flows after a restart); ``flow_data`` the flow's own state as JSON;
    ``abort_requested`` is set by a user or operator and honoured between
    steps and inside long ones.
    """

    flow: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    flow_status: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    flow_owner: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    flow_data: Mapped[dict | None] = mapped_column(sa.JSON)
    abort_requested: Mapped[bool] = mapped_column(default=False)


# --- services and hosts ------------------------------------------------------

class Service(TimestampMixin, Base):
    """One running daemon on one host, with its heartbeat."""

    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("host", "binary"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    binary: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    topic: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    last_seen_at: Mapped[datetime.datetime | None]
    disabled: Mapped[bool] = mapped_column(default=False)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    # The RPC API version the daemon serves ([upgrade_levels] ... = auto).
    rpc_version: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    # Added by 0011 (issue 12, evacuate): an operator (or a fencing tool)
    # says the host is down whatever its heartbeat says; only an operator
    # clears it, a heartbeat never does.
    forced_down: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class ComputeNode(TimestampMixin, Base):
    """A hypervisor's inventory and usage; ``generation`` guards claims.

    Every claim or inventory change increments ``generation``; a writer that
    read generation N may only write if it is still N (the Placement
    pattern), so two schedulers cannot double-book a host.
    """

    __tablename__ = "compute_nodes"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(NAME_LEN), unique=True)
    vcpus: Mapped[int] = mapped_column(default=0)
    memory_mb: Mapped[int] = mapped_column(default=0)
    disk_gb: Mapped[int] = mapped_column(default=0)
    vcpus_used: Mapped[int] = mapped_column(default=0)
    memory_mb_used: Mapped[int] = mapped_column(default=0)
    disk_gb_used: Mapped[int] = mapped_column(default=0)
    cpu_allocation_ratio: Mapped[float] = mapped_column(default=4.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(default=1.0)
    disk_allocation_ratio: Mapped[float] = mapped_column(default=1.0)
    hypervisor_type: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    hypervisor_version: Mapped[int | None]
    hypervisor_hostname: Mapped[str | None] = mapped_column(
        sa.String(NAME_LEN))
    cpu_arch: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    availability_zone: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    generation: Mapped[int] = mapped_column(default=0)
    running_vms: Mapped[int] = mapped_column(default=0)
    # Added by 0015 (online extend): the driver's capability flags that are
    # set (compute.virt.driver.capability_names); None before the agent's
    # first report through a 1.11 conductor.
    capabilities: Mapped[list | None] = mapped_column(sa.JSON, nullable=True)


class Allocation(Base):
    """Resources held by one consumer (an instance or migration uuid)."""

    __tablename__ = "allocations"
    __table_args__ = (sa.UniqueConstraint("consumer_id", "compute_node_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    consumer_id: Mapped[str] = mapped_column(sa.String(UUID_LEN), index=True)
    compute_node_id: Mapped[int] = mapped_column(
        sa.ForeignKey("compute_nodes.id"))
    host: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)
    vcpus: Mapped[int] = mapped_column(default=0)
    memory_mb: Mapped[int] = mapped_column(default=0)
    disk_gb: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)


# --- flavors and images ------------------------------------------------------

class Flavor(TimestampMixin, Base):
    """A size of instance. Soft-deleted rows free their name and flavorid:

    ``deleted`` is 0 while live and the row's ``id`` once deleted (Nova's
    trick), so the unique constraints only bind live rows on every backend.
    """

    __tablename__ = "flavors"
    __table_args__ = (sa.UniqueConstraint("name", "deleted"),
                      sa.UniqueConstraint("flavorid", "deleted"))

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flavorid: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    vcpus: Mapped[int]
    memory_mb: Mapped[int]
    root_gb: Mapped[int] = mapped_column(default=0)
    ephemeral_gb: Mapped[int] = mapped_column(default=0)
    is_public: Mapped[bool] = mapped_column(default=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    extra_specs: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # MiB of swap disk each server of this size gets (0: none).
    swap: Mapped[int] = mapped_column(default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(default=0)
    deleted_at: Mapped[datetime.datetime | None]


class FlavorProject(Base):
    """A project granted access to a private flavor (Nova's flavor_projects)."""

    __tablename__ = "flavor_projects"
    __table_args__ = (sa.UniqueConstraint("flavor_id", "project_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flavor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("flavors.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)


class Aggregate(TimestampMixin, Base):
    """A named group of compute hosts with metadata (os-aggregates); an
    ``availability_zone`` makes its hosts a zone. Deleted rows go."""

    __tablename__ = "aggregates"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(UUID_LEN), unique=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), unique=True)
    availability_zone: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    metadata_: Mapped[dict] = mapped_column("metadata", sa.JSON, default=dict)


class AggregateHost(Base):
    __tablename__ = "aggregate_hosts"
    __table_args__ = (sa.UniqueConstraint("aggregate_id", "host"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    aggregate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("aggregates.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)


class Image(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "images"
    _private_columns = frozenset({"upload_token"})

    id: Mapped[str] = mapped_column(sa.String(UUID_LEN), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    owner: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), index=True)
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN), default="queued")
    disk_format: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    container_format: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The disk size a guest sees (qemu-img's virtual-size), read at upload.
    virtual_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    checksum: Mapped[str | None] = mapped_column(sa.String(64))  # sha256 hex
    min_ram: Mapped[int] = mapped_column(default=0)
    min_disk: Mapped[int] = mapped_column(default=0)
    visibility: Mapped[str] = mapped_column(sa.String(STATE_LEN),
                                            default="private")
    properties: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    location: Mapped[str | None] = mapped_column(sa.String(1024))
    # sha256 (hex) of the nonce of the one signed upload URL that may still
    # upload this image's data (a snapshot's agent); cleared when used.
    upload_token: Mapped[str | None] = mapped_column(sa.String(64))


class ImageMember(TimestampMixin, Base):
    """A project an image is shared with (Glance's image members); the
    member accepts or rejects the share."""

    __tablename__ = "image_members"
    __table_args__ = (sa.UniqueConstraint("image_id", "member"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    image_id: Mapped[str] = mapped_column(
        sa.ForeignKey("images.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN), default="pending")


# --- instances ---------------------------------------------------------------

class Instance(TimestampMixin, SoftDeleteMixin, Base):
    """A virtual machine. ``flavor`` is a snapshot taken at boot, so
    editing or deleting a flavor never changes a running instance; the
    sizing columns repeat it for queries and accounting."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(UUID_LEN), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    display_description: Mapped[str | None] = mapped_column(sa.Text)
    project_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN),
                                                   index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    flavor_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    flavor: Mapped[dict | None] = mapped_column(sa.JSON)
    vcpus: Mapped[int] = mapped_column(default=0)
    memory_mb: Mapped[int] = mapped_column(default=0)
    root_gb: Mapped[int] = mapped_column(default=0)
    ephemeral_gb: Mapped[int] = mapped_column(default=0)
    image_ref: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), index=True)
    node: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    availability_zone: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    vm_state: Mapped[str] = mapped_column(sa.String(STATE_LEN), index=True,
                                          default="building")
    task_state: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    power_state: Mapped[int] = mapped_column(default=0)
    task_deadline: Mapped[datetime.datetime | None] = mapped_column(
        index=True)
    launched_at: Mapped[datetime.datetime | None]
    terminated_at: Mapped[datetime.datetime | None]
    # ``metadata`` is reserved on declarative classes; the column keeps the
    # natural name and to_dict() reports it under that name.
    metadata_: Mapped[dict] = mapped_column("metadata", sa.JSON, default=dict)
    server_group_id: Mapped[str | None] = mapped_column(sa.String(UUID_LEN))
    # The key pair named at boot, copied: deleting the key pair later does
    # not change what the server was given.
    key_name: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    key_data: Mapped[str | None] = mapped_column(sa.Text)
    # A lock refuses non-admins' state changes; ``locked_by`` is "owner" or
    # "admin" (who may lift it), ``locked_reason`` is free text.
    locked: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    locked_by: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    locked_reason: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    # What the owner set or asked for at boot, shown back as Nova does:
    # addresses reached from outside (accessIPv4/v6), the disk partition
    # policy (OS-DCF:diskConfig), the guest's host name (2.90), user data.
    access_ip_v4: Mapped[str | None] = mapped_column(sa.String(39))
    access_ip_v6: Mapped[str | None] = mapped_column(sa.String(39))
    disk_config: Mapped[str | None] = mapped_column(sa.String(STATE_LEN))
    hostname: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    user_data: Mapped[str | None] = mapped_column(sa.Text)
    tags: Mapped[list | None] = mapped_column(sa.JSON)
    # The create request that made it (r-...), shared by a multi-create.
    reservation_id: Mapped[str | None] = mapped_column(sa.String(STATE_LEN), index=True)
    # The encrypted admin password a guest posted (os-server-password);
    # cleared by its owner.
    password: Mapped[str | None] = mapped_column(sa.Text)


class InstanceFault(Base):
    __tablename__ = "instance_faults"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.ForeignKey("instances.uuid"), index=True)
    code: Mapped[int] = mapped_column(default=500)
    message: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    details: Mapped[str | None] = mapped_column(sa.Text)
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)


class InstanceAction(FlowStateMixin, Base):
    """One user-visible operation on an instance (one API request)."""

    __tablename__ = "instance_actions"
    __table_args__ = (sa.Index(None, "instance_uuid", "request_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    instance_uuid: Mapped[str] = mapped_column(
        sa.ForeignKey("instances.uuid"))
    request_id: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    project_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    start_time: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    finish_time: Mapped[datetime.datetime | None]
    message: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    # The flow step running now, so an interrupted flow can be understood.
    current_step: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))


class InstanceActionEvent(Base):
    __tablename__ = "instance_action_events"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    action_id: Mapped[int] = mapped_column(
        sa.ForeignKey("instance_actions.id"), index=True)
    event: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    start_time: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    finish_time: Mapped[datetime.datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[str | None] = mapped_column(sa.Text)
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))


class Migration(FlowStateMixin, TimestampMixin, Base):
    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(UUID_LEN), unique=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.ForeignKey("instances.uuid"), index=True)
    source_host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    dest_host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN), index=True)
    migration_type: Mapped[str] = mapped_column(sa.String(STATE_LEN))
    current_step: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    # A live migration's progress from the source hypervisor's job (bytes).
    memory_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    memory_processed: Mapped[int | None] = mapped_column(sa.BigInteger)
    memory_remaining: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_processed: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_remaining: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Why it ended in error (for administrators).
    error_reason: Mapped[str | None] = mapped_column(sa.Text)


# --- volumes -----------------------------------------------------------------

class Volume(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(sa.String(UUID_LEN), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    project_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN),
                                                   index=True)
    size_gb: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN))
    pool: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    path: Mapped[str | None] = mapped_column(sa.String(1024))
    # Added by 0007 (issue 11): the volume host (its flotilla-volume's
    # host), who made it, what it is called, and until when its
    # transitional status may last (the reaper reads it).
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    description: Mapped[str | None] = mapped_column(sa.Text)
    volume_type: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    availability_zone: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    metadata_: Mapped[dict | None] = mapped_column("metadata", sa.JSON)
    status_deadline: Mapped[datetime.datetime | None]
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Added by 0012 (volume snapshots): where the volume's first bytes came
    # from (a snapshot or an image), whether it is bootable (made from an
    # image), and the image's metadata Cinder shows as volume_image_metadata.
    snapshot_id: Mapped[str | None] = mapped_column(sa.String(UUID_LEN))
    image_id: Mapped[str | None] = mapped_column(sa.String(UUID_LEN))
    image_metadata: Mapped[dict | None] = mapped_column(sa.JSON)
    bootable: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Added by 0017_volume_source_volid: the volume a clone was copied from.
    source_volid: Mapped[str | None] = mapped_column(sa.String(UUID_LEN))
    # Added by 0018_volume_readonly: os-update_readonly_flag's flag (None:
    # never set); a read-only volume is attached read-only.
    readonly: Mapped[bool | None]


class VolumeSnapshot(TimestampMixin, SoftDeleteMixin, Base):
    """A point-in-time copy of a volume (0012), a file in the pool of the
    volume's host (``path``); ``size_gb`` is the volume's size when taken."""

    __tablename__ = "volume_snapshots"

    id: Mapped[str] = mapped_column(sa.String(UUID_LEN), primary_key=True)
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    name: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    description: Mapped[str | None] = mapped_column(sa.Text)
    size_gb: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN))
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    status_deadline: Mapped[datetime.datetime | None]
    metadata_: Mapped[dict | None] = mapped_column("metadata", sa.JSON)
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    path: Mapped[str | None] = mapped_column(sa.String(1024))


class VolumeAttachment(TimestampMixin, Base):
    __tablename__ = "volume_attachments"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id"),
                                           index=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.ForeignKey("instances.uuid"), index=True)
    device: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(STATE_LEN))
    # Added by 0007: the attachment's public id, the compute host it is
    # plugged on, and how that host reaches the export (VolumeConnection).
    uuid: Mapped[str | None] = mapped_column(sa.String(UUID_LEN), unique=True)
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    connection_info: Mapped[dict | None] = mapped_column(sa.JSON)
    # Added by 0013 (boot from volume): the server's delete also deletes
    # the volume; boot_index 0 is the server's boot disk (None: not one).
    delete_on_termination: Mapped[bool] = mapped_column(default=False,
                                                        server_default=sa.false())
    boot_index: Mapped[int | None]
    # Added by 0016: the device role tag given at attach or in the BDM.
    tag: Mapped[str | None] = mapped_column(sa.String(60))


class VolumeCapacity(Base):
    """What one volume host's backend last reported of its space (0014):
    the backend's total and free bytes, the bytes its volume and snapshot
    files take (``allocated_bytes``; sparse files take less than their
    size) and the GiB provisioned to them (their sizes). Placement
    (flotilla.volume_placement) reads it; the volume service rewrites it
    every ``[volume] capacity_report_interval``."""

    __tablename__ = "volume_capacities"

    host: Mapped[str] = mapped_column(sa.String(NAME_LEN), primary_key=True)
    total_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    free_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    allocated_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    provisioned_gb: Mapped[int]
    reported_at: Mapped[datetime.datetime]


# --- identity ----------------------------------------------------------------

class Project(TimestampMixin, Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(sa.String(UUID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(default=True)


class User(TimestampMixin, Base):
    __tablename__ = "users"
    _private_columns = frozenset({"password_hash"})

    id: Mapped[str] = mapped_column(sa.String(UUID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    enabled: Mapped[bool] = mapped_column(default=True)
    default_project_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="SET NULL"))
    # Keystone's free-form user attributes (email, description, ...).
    extra: Mapped[dict | None] = mapped_column(sa.JSON)


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (sa.UniqueConstraint("user_id", "project_id", "role"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(64))


class SystemRoleAssignment(Base):
    """A role on the whole deployment (Keystone's system scope), held
    outside any project: a system reader may read every identity."""

    __tablename__ = "system_role_assignments"
    __table_args__ = (sa.UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(sa.String(64))


class Token(Base):
    """An issued token. Only its sha256 is stored, never the token itself."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"))
    roles: Mapped[list] = mapped_column(sa.JSON, default=list)
    issued_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(index=True)
    revoked: Mapped[bool] = mapped_column(default=False)
    # Scoped to the system (Keystone's {"system": {"all": true}}) rather
    # than to a project.
    system: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class KeyPair(TimestampMixin, Base):
    """A user's ssh public key (or x509 certificate), named per user.

    Soft-deleted as flavors are: ``deleted`` is 0 while live and the row's
    ``id`` once deleted, so a name is unique among a user's live keys only.
    """

    __tablename__ = "key_pairs"
    __table_args__ = (sa.UniqueConstraint("user_id", "name", "deleted"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    user_id: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    public_key: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(STATE_LEN), default="ssh")
    deleted: Mapped[int] = mapped_column(default=0)
    deleted_at: Mapped[datetime.datetime | None]


# --- RPC -----------------------------------------------------------------------

class RPCSeenMessage(Base):
    """A message id a shared-queue server received, kept until its deadline
    (see flotilla.rpc.replay): the insert is the cross-process check."""

    __tablename__ = "rpc_seen_messages"

    key: Mapped[str] = mapped_column(sa.String(NAME_LEN), primary_key=True)
    expires_at: Mapped[datetime.datetime] = mapped_column(index=True)


# --- server groups -----------------------------------------------------------

class ServerGroup(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "server_groups"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(UUID_LEN), unique=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    project_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN),
                                                   index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))
    policy: Mapped[str] = mapped_column(sa.String(STATE_LEN))  # (anti-)affinity


class ServerGroupMember(Base):
    __tablename__ = "server_group_members"
    __table_args__ = (sa.UniqueConstraint("group_id", "instance_uuid"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("server_groups.id", ondelete="CASCADE"))
    instance_uuid: Mapped[str] = mapped_column(
        sa.ForeignKey("instances.uuid"), index=True)


# --- quotas ------------------------------------------------------------------

class Quota(TimestampMixin, Base):
    """An admin's override of one default limit (``[quota]``) for a project.

    ``project_id`` is not a foreign key: quotas may be set for a project
    known only to an external identity service (or noauth mode).
    """

    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "resource"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)
    resource: Mapped[str] = mapped_column(sa.String(64))
    hard_limit: Mapped[int]


class ProjectUserQuota(TimestampMixin, Base):
    """An admin's override of one limit for one user of a project (below
    the project's own limit)."""

    __tablename__ = "project_user_quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "user_id", "resource"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(NAME_LEN), index=True)
    user_id: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    resource: Mapped[str] = mapped_column(sa.String(64))
    hard_limit: Mapped[int]


class QuotaClass(TimestampMixin, Base):
    """An admin's override of a default limit for a quota class; the class
    ``default`` replaces the ``[quota]`` defaults of every project."""

    __tablename__ = "quota_classes"
    __table_args__ = (sa.UniqueConstraint("class_name", "resource"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    class_name: Mapped[str] = mapped_column(sa.String(NAME_LEN))
    resource: Mapped[str] = mapped_column(sa.String(64))
    hard_limit: Mapped[int]
