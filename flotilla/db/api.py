"""The database API of the core records: instances, services, compute
nodes and allocations, instance actions and faults, migrations, flow state.

The decision on facades (issue 9): one module per area, no single facade.
This module is the core area's; the other areas are their own modules,
imported as such (``flotilla.db.identity``, ``quotas``, ``images``,
``image_members``, ``keypairs``, ``server_groups``, ``aggregates``,
``volumes``, ``migration_records``, ``flows``, ``scheduling``, ``servers``).
Code outside ``flotilla.db`` calls those functions only: no sessions, queries
or SQL elsewhere (models appear outside only as type hints; benchmarks
excepted). They open their own short transaction and return detached ORM
objects (usable after the transaction; ``obj.to_dict()`` gives JSON-able
values to send over RPC). Failures are Flotilla exceptions: NotFound
subclasses, Conflict subclasses for lost compare-and-swaps, DBError for a
database that cannot be reached.

Call :func:`configure` once per process before anything else.
"""

from __future__ import annotations

from flotilla.db.actions import (  # noqa: F401
    action_event_finish,
    action_event_start,
    action_events_get,
    action_finish,
    action_get,
    action_get_all,
    action_set_step,
    action_start,
)
from flotilla.db.compute_nodes import (  # noqa: F401
    allocation_claim,
    allocation_free,
    allocation_get_all_by_host,
    allocation_get_by_consumer,
    compute_node_get,
    compute_node_get_all,
    compute_node_update,
)
from flotilla.db.engine import (  # noqa: F401
    configure,
    dispose,
    get_engine,
    mask_url,
    session_scope,
    transaction,
)
from flotilla.db.flavors import (  # noqa: F401
    flavor_access_add,
    flavor_access_list,
    flavor_access_remove,
    flavor_accessible,
    flavor_create,
    flavor_destroy,
    flavor_get,
    flavor_get_all,
    flavor_get_by_name,
    flavor_update,
)
from flotilla.db.flows import (  # noqa: F401
    FlowRecord,
    FlowRecordRef,
    flow_record_for_instance,
    flow_record_get,
    flow_record_update,
    flow_records_unfinished,
)
from flotilla.db.instances import (  # noqa: F401
    ANY,
    instance_create,
    instance_destroy,
    instance_fault_create,
    instance_fault_get_all,
    instance_get,
    instance_get_all,
    instance_get_all_by_host,
    instance_get_expired_tasks,
    instance_update,
    migration_hosts_in_progress,
)
from flotilla.db.migration_records import (  # noqa: F401
    live_migration_complete,
    migration_create,
    migration_get,
    migration_get_by_id,
    migration_in_progress,
    migration_list,
    migration_update,
)
from flotilla.db.server_groups import (  # noqa: F401
    ServerGroupNotFound,
    server_group_add_members,
    server_group_create,
    server_group_destroy,
    server_group_get,
    server_group_get_all,
    server_group_get_for_instance,
    server_group_member_hosts,
    server_group_members,
)
from flotilla.db.services import (  # noqa: F401
    service_destroy,
    service_get,
    service_get_all,
    service_heartbeat,
    service_is_up,
    service_set_disabled,
    service_set_forced_down,
)
