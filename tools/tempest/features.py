"""What Flotilla supports, as Tempest's feature flags say it: ONE table.

Every flag that turns a group of Tempest tests off is here with the
documented non-feature behind it (the README's Tempest section is made from
this table: ``python tools/tempest/features.py --markdown``). A flag set to
True claims the feature works: its tests must pass. When a feature lands
(snapshots #10, volumes #11, migration #12), flip its flags here and make
their tests pass.

Each entry: (section, option, value, reason). ``reason`` is None for flags
that claim support; otherwise it names what Flotilla does not do.
"""

from __future__ import annotations

import sys

NO_NETWORK = ("no networking service: tenant networks, ports, security groups and "
              "floating IPs come with tenant networking later (issue 14 leaves neutron off)")
NO_VOLUME = ("not run: [service_available] cinder turns on Tempest's volume tests, which "
             "use Cinder APIs beyond Flotilla's Block Storage v3 subset (type and QoS "
             "management, backups, transfers, reserve/readonly/upload-to-image actions), "
             "and flotilla-all's test driver (test:///default) cannot attach a disk; the "
             "subset, attach/detach and boot from volume are covered through the "
             "unmodified clients by tests/integration/e2e/test_volumes.py and its "
             "neighbours")
NO_MIGRATION = ("the test driver (test:///default) is one in-process libvirt shared by flotilla-all's agents, so one guest cannot exist on two hosts; the multi-host variant "
                "and tests/integration/e2e/test_resize.py run cold migration and resize")

FEATURES: list[tuple[str, str, object, str | None]] = [
    # --- services -------------------------------------------------------------
    ("service_available", "nova", True, None),
    ("service_available", "glance", True, None),
    ("service_available", "neutron", False, NO_NETWORK),
    ("service_available", "cinder", False, NO_VOLUME),
    ("service_available", "swift", False, "no object storage service"),
    ("service_available", "horizon", False, "no dashboard"),
    # --- identity ---------------------------------------------------------------
    ("identity-feature-enabled", "api_v2", False, "Keystone v2 was removed upstream; "
     "only v3 is served"),
    ("identity-feature-enabled", "api_v2_admin", False, "Keystone v2 is not served"),
    ("identity-feature-enabled", "api_v3", True, None),
    ("identity-feature-enabled", "trust", False, "no trusts (delegation) in the "
     "identity subset"),
    ("identity-feature-enabled", "access_rules", False, "no application credential "
     "access rules"),
    ("identity-feature-enabled", "api_extensions", "", "no Keystone API extensions "
     "(OS-INHERIT, OS-EC2, OS-OAUTH1, OS-TRUST, OS-FEDERATION, ...)"),
    ("identity-feature-enabled", "security_compliance", False,
     "no password policies (lockout, history, expiry)"),
    ("identity-feature-enabled", "domain_specific_drivers", False,
     "one SQL identity backend, no per-domain drivers"),
    ("identity-feature-enabled", "immutable_user_source", False, None),
    # --- compute ----------------------------------------------------------------
    ("compute-feature-enabled", "disk_config", True, None),
    ("compute-feature-enabled", "console_output", True, None),
    ("compute-feature-enabled", "pause", True, None),
    ("compute-feature-enabled", "suspend", True, None),
    ("compute-feature-enabled", "change_password", False,
     "no guest agent to set an admin password in a running guest"),
    ("compute-feature-enabled", "resize", True, None),
    ("compute-feature-enabled", "cold_migration", True, None),
    ("compute-feature-enabled", "live_migration", True, None),
    ("compute-feature-enabled", "shelve", False, "no shelve/unshelve"),
    ("compute-feature-enabled", "shelve_migrate", False, "no shelve/unshelve"),
    ("compute-feature-enabled", "snapshot", True, None),
    ("compute-feature-enabled", "rescue", False, "no rescue mode"),
    ("compute-feature-enabled", "stable_rescue", False, "no rescue mode"),
    ("compute-feature-enabled", "metadata_service", False,
     "no metadata service (guests get no network)"),
    ("compute-feature-enabled", "config_drive", False, "no config drive"),
    ("compute-feature-enabled", "personality", False,
     "no file injection (removed from Nova at 2.57)"),
    ("compute-feature-enabled", "enable_instance_password", True, None),
    ("compute-feature-enabled", "interface_attach", False, NO_NETWORK),
    ("compute-feature-enabled", "vnc_console", False, "no remote consoles (VNC, SPICE, "
     "serial): only the console log"),
    ("compute-feature-enabled", "spice_console", False, "no remote consoles"),
    ("compute-feature-enabled", "serial_console", False, "no remote consoles"),
    ("compute-feature-enabled", "attach_encrypted_volume", False, NO_VOLUME),
    ("compute-feature-enabled", "swap_volume", False, NO_VOLUME),
    ("compute-feature-enabled", "volume_multiattach", False, NO_VOLUME),
    ("compute-feature-enabled", "volume_backed_live_migration", False, NO_VOLUME),
    ("compute-feature-enabled", "block_migration_for_live_migration", False,
     "live migration copies local disks by itself (block_migration auto); the "
     "explicit block-migration tests have not been run against it"),
    ("compute-feature-enabled", "ide_bus", False, "guests use virtio disks only"),
    ("compute-feature-enabled", "unified_limits", False,
     "quotas are Nova's legacy quota sets, not Keystone unified limits"),
    ("compute-feature-enabled", "hostname_fqdn_sanitization", False,
     "server names are not turned into fully qualified host names (2.94)"),
    ("compute-feature-enabled", "scheduler_enabled_filters",
     "ComputeFilter,RetryFilter,AvailabilityZoneFilter,RamFilter,CoreFilter,DiskFilter,"
     "ImagePropertiesFilter,ServerGroupAffinityFilter,ServerGroupAntiAffinityFilter,"
     "NumInstancesFilter,SameHostFilter,DifferentHostFilter,"
     "AggregateInstanceExtraSpecsFilter", None),
    ("compute", "certified_image_ref", "", "no trusted image certificate validation"),
    # --- image --------------------------------------------------------------------
    ("image-feature-enabled", "api_v2", True, None),
    ("image-feature-enabled", "import_image", False,
     "no interoperable image import: images are uploaded with PUT .../file"),
    ("image-feature-enabled", "os_glance_reserved", True, None),
    ("image-feature-enabled", "manage_locations", False,
     "no multiple image locations (one local store)"),
    ("image-feature-enabled", "image_conversion", False, "no image conversion on import"),
    ("image-feature-enabled", "image_format_enforcement", True, None),
    ("image-feature-enabled", "http_store_enabled", False, "one local store"),
    ("image-feature-enabled", "store_weight_enabled", False, "one local store"),
    ("image", "image_caching_enabled", False, "no image cache API"),
    ("image", "http_image", "", "no image tasks or web-download import: image data "
     "is uploaded"),
    # --- validation (guests are not reached over the network) ---------------------
    ("validation", "run_validation", False, NO_NETWORK),
]

# Tests of what Flotilla does not do that Tempest has no feature flag for,
# left out of the run (the README lists them). Key: a module, class or
# test under tempest.api.
ONE_DOMAIN = "one domain (Default): domains cannot be created, configured or deleted"
FIXED_ROLES = "the four roles are fixed: no role creation, implied-role or domain-role API"
METADEFS = ("no metadata definitions catalog (Glance's metadefs: namespaces, objects, "
            "properties, tags, resource types). It only describes properties for "
            "dashboards; Flotilla's images take free-form properties without it")
NOT_RUN: dict[str, str] = {
    "image.v2.test_images_dependency.ImageDependencyTests.test_nova_image_snapshot_dependency":
    "snapshots a server with no flag for it; flotilla-all's test driver takes no snapshots "
    "(the multi-host variant runs it)",
    "identity.admin.v3.test_application_credentials": "no application credentials (Tempest 47 "
    "has no flag for them): users authenticate with passwords only",
    "identity.v3.test_application_credentials": "no application credentials",
    "identity.admin.v3.test_credentials": "no credentials store (EC2/TOTP credentials)",
    "identity.admin.v3.test_domains": ONE_DOMAIN,
    "identity.admin.v3.test_domains_negative": ONE_DOMAIN,
    "identity.admin.v3.test_domain_configuration": ONE_DOMAIN,
    "identity.admin.v3.test_default_project_id": ONE_DOMAIN + " (the test makes one)",
    "identity.admin.v3.test_list_users": ONE_DOMAIN + " (the class makes one)",
    "identity.admin.v3.test_projects.ProjectsTestJSON.test_project_create_with_domain":
    ONE_DOMAIN,
    "identity.admin.v3.test_projects.ProjectsTestJSON.test_create_is_domain_project":
    ONE_DOMAIN,
    "identity.admin.v3.test_projects.ProjectsTestJSON.test_project_create_with_parent":
    "no project hierarchy",
    "identity.admin.v3.test_list_projects.ListProjectsTestJSON": "no project hierarchy (the "
    "class makes a child project)",
    "identity.admin.v3.test_projects.ProjectsTestJSON.test_project_get_equals_list":
    "no project tags",
    "identity.admin.v3.test_project_tags": "no project tags",
    "identity.admin.v3.test_roles": FIXED_ROLES,
    "identity.admin.v3.test_users.UsersV3TestJSON.test_list_user_projects": FIXED_ROLES
    + " (the test makes a role)",
    "identity.admin.v3.test_tokens.TokensV3TestJSON.test_rescope_token": FIXED_ROLES
    + " (the test makes a role)",
    "identity.admin.v3.test_tokens.TokensV3TestJSON.test_get_available_domain_scopes":
    ONE_DOMAIN + "; no groups",
    "identity.admin.v3.test_endpoint_groups": "the catalog is fixed: no endpoint groups",
    "identity.admin.v3.test_endpoints": "the catalog is fixed: no endpoint management",
    "identity.admin.v3.test_endpoints_negative": "the catalog is fixed: no endpoint management",
    "identity.admin.v3.test_services": "the catalog is fixed: no service management",
    "identity.admin.v3.test_regions": "one fixed region: no region management",
    "identity.admin.v3.test_groups": "no user groups",
    "identity.admin.v3.test_oauth_consumers": "no OAuth1 (OS-OAUTH1)",
    "identity.admin.v3.test_policies": "no policy blobs API",
    "image.v2.admin.test_images_metadefs_namespaces": METADEFS,
    "image.v2.admin.test_images_metadefs_namespace_objects": METADEFS,
    "image.v2.admin.test_images_metadefs_namespace_properties": METADEFS,
    "image.v2.admin.test_images_metadefs_namespace_tags": METADEFS,
    "image.v2.admin.test_images_metadefs_resource_types": METADEFS,
    "image.v2.test_images_metadefs_schema": METADEFS,
    "compute.test_networks.ComputeNetworksTest": "assumes nova-network when neutron "
    "is off and wants a network listed: Flotilla has no network API yet",
    "compute.servers.test_server_actions.ServerActionsTestOtherA."
    "test_remove_server_all_security_groups": NO_NETWORK + " (the test has no flag)",
    "compute.admin.test_servers_on_multinodes.UnshelveToHostMultiNodesTest":
    "no shelve/unshelve (the class does not check [compute-feature-enabled] shelve)",
    "compute.test_extensions.ExtensionsTest.test_get_extension": "asks for the "
    "os-consoles extension (interactive consoles), which Flotilla does not have",
}


# What libvirt's test:///default driver (under flotilla-all) cannot do, on
# top of FEATURES; a real multi-host cloud (make tempest CLOUD=...) runs
# these tests.
TEST_DRIVER_LIMITS: list[tuple[str, str, object, str]] = [
    ("compute-feature-enabled", "console_output", False,
     "the test driver (test:///default) keeps no console log; the multi-host "
     "variant runs these tests"),
    ("compute-feature-enabled", "snapshot", False,
     "the test driver (test:///default) has no disks to copy; the multi-host "
     "variant runs these tests"),
    ("compute-feature-enabled", "live_migration", False,
     "the test driver (test:///default) cannot migrate; the multi-host variant "
     "runs these tests"),
    ("compute-feature-enabled", "resize", False, NO_MIGRATION),
    ("compute-feature-enabled", "cold_migration", False, NO_MIGRATION),
]


# Every skip Tempest reports must come from a flag above (or the test
# driver's limits): (a regular expression on its reason, the flag). A skip
# with any other reason fails the tier (no silent skips).
SKIP_CAUSES: list[tuple[str, str]] = [
    (r"Neutron|neutron|network service|[Nn]etwork.*(available|enabled)|"
     r"fixed_network_name|known-for-sure existing network|Instance validation",
     "service_available.neutron"),
    (r"Cinder|[Vv]olume service|volume service", "service_available.cinder"),
    (r"Resize not available", "compute-feature-enabled.resize"),
    (r"Cold migration", "compute-feature-enabled.cold_migration"),
    (r"Live migration", "compute-feature-enabled.live_migration"),
    (r"[Ss]napshot", "compute-feature-enabled.snapshot"),
    (r"rescue", "compute-feature-enabled.rescue"),
    (r"Shelve", "compute-feature-enabled.shelve"),
    (r"Console output not supported", "compute-feature-enabled.console_output"),
    (r"Change password", "compute-feature-enabled.change_password"),
    (r"VNC Console", "compute-feature-enabled.vnc_console"),
    (r"personality", "compute-feature-enabled.personality"),
    (r"FQDN hostname sanitization", "compute-feature-enabled.hostname_fqdn_sanitization"),
    (r"certified_image_ref", "compute.certified_image_ref"),
    (r"Security compliance", "identity-feature-enabled.security_compliance"),
    (r"Trusts", "identity-feature-enabled.trust"),
    (r"access rules", "identity-feature-enabled.access_rules"),
    (r"OS-EC2|Inherits", "identity-feature-enabled.api_extensions"),
    (r"glance caching", "image.image_caching_enabled"),
    (r"http_image", "image.http_image"),
    (r"image import is not available", "image-feature-enabled.import_image"),
    (r"http store", "image-feature-enabled.http_store_enabled"),
    (r"Image format enforcement", "image-feature-enabled.image_format_enforcement"),
    (r"does not support v2\.17", "the image API's version: v2.16, no location import "
     "(Glance 2.17)"),
    (r"store weight", "image-feature-enabled.store_weight_enabled"),
    (r"Image format testing is not configured",
     "image.images_manifest_file (unset: the tier ships no sample image of every "
     "disk format)"),
    (r"show_multiple_locations", "image-feature-enabled.manage_locations"),
    # Tempest 47 skips these itself (@decorators.skip_because of an upstream
    # bug), whatever the cloud: seen on the multi-host variant, where the
    # console-output tests run.
    (r"Skipped until bug: https://launchpad\.net/bugs/2028851",
     "Tempest's own skip_because (upstream bug 2028851)"),
]


def skip_cause(reason: str) -> str | None:
    """The flag behind a skip reason, or None (an unexplained skip)."""
    import re
    for pattern, flag in SKIP_CAUSES:
        if re.search(pattern, reason):
            return flag
    return None


# Tests of features other branches are building right now, left out until
# they merge; whoever merges one deletes its entries here (and makes the
# tests pass). Keys as NOT_RUN's.
PENDING: dict[str, str] = {
}


def option_lines(test_driver: bool = True) -> dict[str, dict[str, object]]:
    """section -> {option: value} of the table (with the test driver's
    limits when the cloud runs on test:///default)."""
    result: dict[str, dict[str, object]] = {}
    for section, option, value, _ in FEATURES + (TEST_DRIVER_LIMITS if test_driver
                                                 else []):
        result.setdefault(section, {})[option] = value
    return result


def markdown() -> str:
    """The README's list of what is off and why."""
    lines = ["| Tempest option | value | why |", "|---|---|---|"]
    for section, option, value, reason in FEATURES:
        if reason:
            lines.append("| `[%s] %s` | %s | %s |" % (section, option, value, reason))
    for section, option, value, reason in TEST_DRIVER_LIMITS:
        lines.append("| `[%s] %s` (flotilla-all only) | %s | %s |"
                     % (section, option, value, reason))
    lines += ["", "| tests not run (no Tempest flag) | why |", "|---|---|"]
    for module, reason in NOT_RUN.items():
        lines.append("| `tempest.api.%s` | %s |" % (module, reason))
    lines += ["", "| tests not run until a branch merges | which |", "|---|---|"]
    for module, reason in PENDING.items():
        lines.append("| `tempest.api.%s` | %s |" % (module, reason))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown())
    else:
        for section, options in option_lines().items():
            print("[%s]" % section)
            for key, value in options.items():
                print("%s = %s" % (key, value))
