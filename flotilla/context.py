"""The request context: who asked, for which project, under which request id.

It travels in every RPC envelope so that a log line on any host can be tied
to the API request that caused it.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid


def generate_request_id() -> str:
    return "req-" + str(uuid.uuid4())


@dataclasses.dataclass
class RequestContext:
    request_id: str = dataclasses.field(default_factory=generate_request_id)
    user_id: str | None = None
    project_id: str | None = None
    roles: list[str] = dataclasses.field(default_factory=list)
    #: The host of the agent that sent the request, as its signature proves
    #: (flotilla.rpc.signing.Keyring); None for the control plane. Never
    #: serialised: it is set by the receiver, never claimed by a sender.
    agent_host: str | None = dataclasses.field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def to_dict(self) -> dict:
        return {"request_id": self.request_id, "user_id": self.user_id,
                "project_id": self.project_id, "roles": list(self.roles)}

    @classmethod
    def from_dict(cls, values: dict) -> RequestContext:
        return cls(request_id=values.get("request_id") or generate_request_id(),
                   user_id=values.get("user_id"),
                   project_id=values.get("project_id"),
                   roles=list(values.get("roles") or []))

    def elevated(self) -> RequestContext:
        roles = list(self.roles) + ([] if self.is_admin else ["admin"])
        return dataclasses.replace(self, roles=roles)

    # The context of the request being handled by this thread, for logging.
    def __enter__(self) -> RequestContext:
        _local.stack = getattr(_local, "stack", []) + [self]
        return self

    def __exit__(self, *exc) -> None:
        _local.stack.pop()


def get_admin_context() -> RequestContext:
    return RequestContext(roles=["admin"])


_local = threading.local()


def current() -> RequestContext | None:
    """The context the calling thread is working for, if any."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None
