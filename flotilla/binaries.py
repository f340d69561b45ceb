"""The names of Flotilla's daemons, as services report them
(``flotilla-manage service list``) and as their units and logs are called;
the compute API (os-services) shows them under Nova's names (api_name)."""

API = "flotilla-api"
COMPUTE = "flotilla-compute"
CONDUCTOR = "flotilla-conductor"
SCHEDULER = "flotilla-scheduler"
VOLUME = "flotilla-volume"

# The compute API is Nova's: its clients know these daemons as nova-compute,
# nova-conductor and nova-scheduler (CLI commands, dashboards, Tempest).
_NOVA_PREFIX, _OWN_PREFIX = "nova-", "flotilla-"


def api_name(binary: str) -> str:
    """The name the compute API shows for a daemon (nova-compute, ...)."""
    return _NOVA_PREFIX + binary[len(_OWN_PREFIX):] if binary.startswith(_OWN_PREFIX) \
        else binary


def own_name(name: str | None) -> str | None:
    """A daemon named in an API request (either name), as Flotilla names it."""
    if name and name.startswith(_NOVA_PREFIX):
        return _OWN_PREFIX + name[len(_NOVA_PREFIX):]
    return name
