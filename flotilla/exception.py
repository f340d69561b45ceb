"""Flotilla's exceptions.

Every exception that may cross an RPC boundary lives here: the RPC layer
re-raises a remote exception as the class of the same name from this module
(with the remote message), and as :class:`RemoteError` otherwise. Each class
carries an HTTP-ish ``code`` the API maps to a status.
"""

from __future__ import annotations


class FlotillaException(Exception):
    """Base class. ``msg_fmt`` is formatted with the keyword arguments."""

    msg_fmt = "An unknown error occurred."
    code = 500

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


class MessageUndeliverable(MessagingException):
    msg_fmt = "No queue is bound for %(routing_key)s on exchange %(exchange)s: nobody would receive %(method)s"
    code = 503


class MessagingUnavailable(MessagingException):
    msg_fmt = "The message broker could not be reached: %(reason)s"
    code = 503


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


class InstanceDeployFailure(FlotillaException):
    msg_fmt = "Failed to deploy instance %(instance_uuid)s: %(reason)s"


class ImageChecksumMismatch(FlotillaException):
    msg_fmt = "Image %(image_id)s has sha256 %(actual)s, expected %(expected)s"


class NoValidHost(FlotillaException):
    msg_fmt = "No valid host was found. %(reason)s"
    code = 500


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


# --- API ---------------------------------------------------------------------

class OverQuota(FlotillaException):
    """A request would take a project over one of its quota limits."""

    msg_fmt = "Quota exceeded for %(resources)s: %(detail)s"
    code = 403
