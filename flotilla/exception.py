"""Flotilla's exceptions.

Every exception that may cross an RPC boundary lives here: the RPC layer
re-raises a remote exception as the class of the same name from this module
(with the remote message), and as :class:`RemoteError` otherwise. Each class
carries an HTTP-ish ``code`` the API maps to a status, and says what any
user may read about it (:meth:`FlotillaException.public_message`): a fault
on a server is shown to its owner, so a message that can name a host, an
internal address or a path (hypervisor URIs, queue names, libvirt errors)
stays for administrators.
"""

from __future__ import annotations


class FlotillaException(Exception):
    """Base class. ``msg_fmt`` is formatted with the keyword arguments."""

    msg_fmt = "An unknown error occurred."
    code = 500
    #: What a non-admin may read instead of the message (None: the message
    #: itself is safe). Errors of the caller's own request (code < 500) are
    #: safe; internal errors say what failed without where.
    public_msg: str | None = "An internal error occurred."

    def __init__(self, message: str | None = None, **kwargs) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs if kwargs else self.msg_fmt
            except (KeyError, TypeError):
                message = self.msg_fmt
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def public_message(self) -> str:
        """The message, or its public form when it may name internals."""
        if self.public_msg is None or self.code < 500:
            return self.message
        return self.public_msg


# --- generic -----------------------------------------------------------------

class Invalid(FlotillaException):
    msg_fmt = "Invalid input: %(reason)s"
    code = 400


class NotFound(FlotillaException):
    msg_fmt = "Resource could not be found."
    code = 404


class Conflict(FlotillaException):
    msg_fmt = "Conflict: %(reason)s"
    code = 409


class Forbidden(FlotillaException):
    msg_fmt = "Not allowed: %(reason)s"
    code = 403


class NotSupported(FlotillaException):
    msg_fmt = "%(operation)s is not supported by %(what)s"
    code = 501


# --- messaging ---------------------------------------------------------------

class MessagingException(FlotillaException):
    msg_fmt = "Messaging error: %(reason)s"


class MessagingTimeout(MessagingException):
    msg_fmt = "Timed out after %(timeout)ss waiting for a reply to %(method)s on %(topic)s"
    code = 504
    public_msg = "A service did not answer in time."


class MessageUndeliverable(MessagingException):
    msg_fmt = "No queue is bound for %(routing_key)s on exchange %(exchange)s: nobody would receive %(method)s"
    code = 503
    public_msg = "The service of the server's host is not running."


class MessagingUnavailable(MessagingException):
    msg_fmt = "The message broker could not be reached: %(reason)s"
    code = 503
    public_msg = "The cloud's message bus is unavailable."


class InvalidMessage(MessagingException):
    msg_fmt = "Rejected message: %(reason)s"
    code = 400


class UnsupportedVersion(MessagingException):
    msg_fmt = "Endpoint %(topic)s speaks version %(server_version)s and cannot handle a %(version)s request"
    code = 400


class UnknownMethod(MessagingException):
    msg_fmt = "Endpoint %(topic)s has no method %(method)s"
    code = 400


class RemoteError(MessagingException):
    """A remote exception with no matching local class."""

    msg_fmt = "Remote error: %(exc_type)s %(value)s"

    def __init__(self, exc_type: str = "", value: str = "", **kwargs) -> None:
        self.exc_type = exc_type
        self.value = value
        super().__init__(exc_type=exc_type, value=value, **kwargs)


# --- database and state ------------------------------------------------------

class DBError(FlotillaException):
    msg_fmt = "Database error: %(reason)s"


class DBNotSynced(DBError):
    msg_fmt = "The database schema is not at the current revision (%(current)s, want %(head)s): run flotilla-manage db sync"


class InstanceNotFound(NotFound):
    msg_fmt = "Instance %(instance_uuid)s could not be found."


class InstanceStateConflict(Conflict):
    """A compare-and-swap on (vm_state, task_state) found another state."""

    msg_fmt = ("Instance %(instance_uuid)s is in vm_state %(actual_vm_state)s, "
               "task_state %(actual_task_state)s; expected vm_state "
               "%(expected_vm_state)s, task_state %(expected_task_state)s")


class ServiceNotFound(NotFound):
    msg_fmt = "Service %(binary)s on host %(host)s could not be found."


class ComputeNodeNotFound(NotFound):
    msg_fmt = "Compute node %(host)s could not be found."


class FlavorNotFound(NotFound):
    msg_fmt = "Flavor %(flavor_id)s could not be found."


class ImageNotFound(NotFound):
    msg_fmt = "Image %(image_id)s could not be found."


class ResourceProviderGenerationConflict(Conflict):
    msg_fmt = "Compute node %(host)s changed while claiming (generation %(generation)s)"


# --- compute -----------------------------------------------------------------

class HypervisorUnavailable(FlotillaException):
    msg_fmt = "Connection to the hypervisor %(uri)s is broken: %(reason)s"
    code = 503
    public_msg = "The hypervisor of the server's host is unavailable."


class InstanceDeployFailure(FlotillaException):
    msg_fmt = "Failed to deploy instance %(instance_uuid)s: %(reason)s"
    public_msg = "The server could not be created on its host."


class ImageChecksumMismatch(FlotillaException):
    msg_fmt = "Image %(image_id)s has sha256 %(actual)s, expected %(expected)s"
    public_msg = None


class TaskTimedOut(FlotillaException):
    msg_fmt = ("Task %(task)s timed out: not finished by its deadline %(deadline)s; "
               "ended by the reaper")
    code = 504
    public_msg = None


class NoValidHost(FlotillaException):
    """Its reason says which filters eliminated how many hosts, never
    which hosts: it is shown to the server's owner."""

    msg_fmt = "No valid host was found. %(reason)s"
    code = 500
    public_msg = None


# --- virt: volumes, snapshots, migration -------------------------------------

class DeviceNameUnavailable(Conflict):
    msg_fmt = "Device name %(device)s is not available: %(reason)s"


class VolumeAttachFailed(FlotillaException):
    msg_fmt = "Attaching volume %(volume_id)s to instance %(instance_uuid)s failed: %(reason)s"


class SnapshotFailed(FlotillaException):
    msg_fmt = "Snapshot of instance %(instance_uuid)s failed: %(reason)s"


class MigrationError(FlotillaException):
    msg_fmt = "Migration of instance %(instance_uuid)s failed: %(reason)s"


class MigrationPreCheckError(MigrationError):
    msg_fmt = "Instance %(instance_uuid)s cannot migrate: %(reason)s"
    code = 400


class MigrationAborted(MigrationError):
    msg_fmt = "Migration of instance %(instance_uuid)s was aborted"


class NoMigrationInProgress(FlotillaException):
    msg_fmt = "Instance %(instance_uuid)s has no migration in progress on this host"
    code = 400


# --- images ------------------------------------------------------------------

class ImageNotActive(ImageNotFound):
    """The image exists but has no data yet (or is being uploaded); a
    subclass of ImageNotFound so callers that only need a usable image
    catch one class, with Nova's 400 as its code."""

    msg_fmt = "Image %(image_id)s is not active (status %(status)s)."
    code = 400


class ImageFormatMismatch(Invalid):
    msg_fmt = "Image data is %(actual)s but the image's disk_format is %(expected)s"


class ImageTooLarge(FlotillaException):
    msg_fmt = "Image data exceeds the maximum size of %(limit)s bytes"
    code = 413


class ImageUploadIncomplete(Invalid):
    msg_fmt = "Image upload ended after %(received)s of %(expected)s bytes"


class ImageStatusConflict(Conflict):
    msg_fmt = "Image %(image_id)s is %(actual)s; expected %(expected)s"


class ImageDownloadForbidden(Forbidden):
    msg_fmt = "Image download URL is not valid: %(reason)s"


class ImageUploadForbidden(Forbidden):
    msg_fmt = "Image upload URL is not valid: %(reason)s"


# --- API ---------------------------------------------------------------------

class OverQuota(FlotillaException):
    """A request would take a project over one of its quota limits."""

    msg_fmt = "Quota exceeded for %(resources)s: %(detail)s"
    code = 403


class KeypairLimitExceeded(OverQuota):
    msg_fmt = "Quota exceeded, too many key pairs."


class InstanceIsLocked(Conflict):
    """A non-admin asked to change a locked instance."""

    msg_fmt = "Instance %(instance_uuid)s is locked"


# --- key pairs ---------------------------------------------------------------

class InvalidKeypair(Invalid):
    msg_fmt = "Keypair data is invalid: %(reason)s"


class KeypairNotFound(NotFound):
    msg_fmt = "Keypair %(name)s not found for user %(user_id)s"


class KeyPairExists(Conflict):
    msg_fmt = "Key pair '%(key_name)s' already exists."


class MigrationNotFound(NotFound):
    msg_fmt = "Migration %(migration_id)s could not be found."


class VolumeNotSettled(FlotillaException):
    """An attachment without its connection (its attach or detach under
    way) where a guest is about to be defined with its volumes: dropping it
    would lose the disk on the new definition."""
    msg_fmt = ("Volume %(volume_id)s of instance %(instance_uuid)s has no settled "
               "connection (attachment %(attachment_id)s is %(status)s: an attach or "
               "detach is under way); the guest cannot be defined with its volumes")
    code = 409
