"""GET /limits: the project's absolute quota limits and usage.

An admin may ask for another project's with ``tenant_id``.
"""

from __future__ import annotations

from api.compute.servers import quota_limits
from api.state import APIState, ctxt, version
from flotilla.db import quotas as quotas_db


class Limits:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        project = ctx.project_id
        if ctx.is_admin and req.get_param("tenant_id"):
            project = req.get_param("tenant_id")
        limits = quota_limits(self.state.conf, project)
        usage = quotas_db.get_usage(project)
        absolute = {
            "maxTotalInstances": limits["instances"],
            "maxTotalCores": limits["cores"],
            "maxTotalRAMSize": limits["ram"],
            "maxServerMeta": limits["metadata_items"],
            "maxServerGroups": limits["server_groups"],
            "maxServerGroupMembers": limits["server_group_members"],
            "maxPersonality": limits["injected_files"],
            "maxPersonalitySize": limits["injected_file_content_bytes"],
            "maxTotalKeypairs": limits["key_pairs"], "maxImageMeta": 128,
            "totalInstancesUsed": usage["instances"],
            "totalCoresUsed": usage["cores"],
            "totalRAMUsed": usage["ram"],
            "totalServerGroupsUsed": usage["server_groups"],
        }
        if version(req) < (2, 36):
            # Nova's network proxies' limits, gone at 2.36. Flotilla has no
            # security groups or floating IPs: none may be made.
            absolute.update(maxSecurityGroups=0, maxSecurityGroupRules=0,
                            maxTotalFloatingIps=0, totalSecurityGroupsUsed=0,
                            totalFloatingIpsUsed=0)
        if version(req) >= (2, 57):
            for key in ("maxPersonality", "maxPersonalitySize"):
                absolute.pop(key)
        resp.media = {"limits": {"absolute": absolute, "rate": []}}
