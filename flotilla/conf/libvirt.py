"""[libvirt] options: how the compute agent reaches and drives libvirt."""

from __future__ import annotations

import os
import sys

from oslo_config import cfg

# The templates shipped with Flotilla: etc/flotilla/templates in a source
# tree (or an editable install), else where setup.cfg's data_files put them
# (<prefix>/etc/flotilla/templates). Operators point template_dir at their
# own copies.
_SOURCE_TEMPLATES = os.path.normpath(os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "etc", "flotilla",
    "templates"))
_PACKAGED_TEMPLATES = (_SOURCE_TEMPLATES if os.path.isdir(_SOURCE_TEMPLATES)
                       else os.path.join(sys.prefix, "etc", "flotilla", "templates"))

libvirt_group = cfg.OptGroup(
    "libvirt", title="libvirt driver options",
    help="How the compute agent connects to libvirt and what guests it "
         "defines there.")

libvirt_opts = [
    cfg.StrOpt(
        "connection_uri",
        default="qemu:///system",
        help="libvirt URI of this host's hypervisor: qemu:///system on a "
             "real host, qemu+tcp://127.0.0.1:PORT/system for a host of the "
             "test rig, test:///default for libvirt's built-in test driver "
             "(no daemon, no real disks)."),
    cfg.StrOpt(
        "virt_type",
        default="qemu",
        choices=[("qemu", "TCG software emulation; works everywhere"),
                 ("kvm", "hardware acceleration; only where the operator "
                         "knows KVM really boots Linux guests")],
        help="Domain type of the guests. The existence of /dev/kvm proves "
             "nothing (it may be a software KVM on which stock kernels "
             "hang), so kvm is opt-in. Ignored with test:///default."),
    cfg.StrOpt(
        "instances_path",
        default="$state_path/instances",
        help="Directory holding one sub-directory per instance (root disk, "
             "console log) and the image cache in _base."),
    cfg.StrOpt(
        "template_dir",
        default=_PACKAGED_TEMPLATES,
        sample_default="<source tree>/etc/flotilla/templates",
        help="Directory with domain.xml, disk.xml and interface.xml, the "
             "templates every guest's XML is rendered from. Copy the "
             "packaged ones to customise guests."),
    cfg.StrOpt(
        "machine_type",
        default="pc",
        help="QEMU machine type of new guests (pc, q35, or a versioned "
             "name such as pc-i440fx-7.2)."),
    cfg.StrOpt(
        "network_type",
        default="user",
        choices=[("user", "QEMU user-mode networking; needs no host setup"),
                 ("network", "a libvirt virtual network (network_name)"),
                 ("bridge", "an existing host bridge (bridge_name)")],
        help="Kind of virtio NIC given to a guest whose flavor asks for a "
             "network (flavor extra 'network': true)."),
    cfg.StrOpt(
        "network_name",
        default="default",
        help="libvirt network a NIC joins when network_type is network."),
    cfg.StrOpt(
        "bridge_name",
        default="virbr0",
        help="Host bridge a NIC joins when network_type is bridge."),
    cfg.IntOpt(
        "snapshot_copy_bandwidth",
        default=0,
        min=0,
        help="MiB/s the live copy of a running guest's root disk may read "
             "and write during a snapshot (0: as fast as the disks go). Limits "
             "what a snapshot takes from the guests' I/O; the guest is never "
             "paused either way."),
    cfg.StrOpt(
        "live_migration_uri",
        default="",
        help="libvirt URI by which other hosts' libvirtd reach this host's "
             "for a peer-to-peer live migration, with %s standing for this "
             "host's name (for example qemu+tls://%s/system). Empty: "
             "connection_uri, which is right for the test rig (every rig "
             "libvirtd listens on 127.0.0.1) and wrong for qemu:///system."),
    cfg.IntOpt(
        "live_migration_bandwidth",
        default=0,
        min=0,
        help="MiB/s a live migration may use for the guest's memory and "
             "local disks (0: unlimited)."),
    cfg.IntOpt(
        "live_migration_downtime",
        default=500,
        min=10,
        help="Longest pause in milliseconds of the guest at the switch-over "
             "of a live migration; libvirt waits until the rest fits in it. "
             "The limit starts at a tenth of this and grows to it in "
             "live_migration_downtime_steps steps."),
    cfg.IntOpt(
        "live_migration_downtime_steps",
        default=10,
        min=1,
        help="Steps in which the downtime limit of a live migration grows "
             "from live_migration_downtime/steps to live_migration_downtime."),
    cfg.IntOpt(
        "live_migration_downtime_delay",
        default=75,
        min=1,
        help="Seconds between two downtime steps, per GiB of memory and "
             "copied disk of the guest."),
    cfg.BoolOpt(
        "live_migration_permit_post_copy",
        default=False,
        help="Let force-complete switch a live migration to post-copy: the "
             "guest runs on the destination at once and fetches the memory "
             "still on the source as it touches it (no pause, but a network "
             "or source failure until the copy ends loses the guest). Off: "
             "force-complete pauses the guest until the copy ends. Needs "
             "userfaultfd on the destination hosts."),
    cfg.BoolOpt(
        "live_migration_auto_converge",
        default=False,
        help="Let QEMU throttle the guest's vCPUs when its memory changes "
             "faster than the migration copies it."),
    cfg.IntOpt(
        "live_migration_completion_timeout",
        default=800,
        min=0,
        help="Seconds a live migration may run before it is aborted and "
             "the guest left on its source (0: no limit)."),
    cfg.IntOpt(
        "image_cache_max_age",
        default=24 * 3600,
        min=0,
        help="Seconds a cached base image no root disk uses is kept before "
             "the periodic image cache cleanup removes it."),
    cfg.IntOpt(
        "image_download_timeout",
        default=300,
        min=1,
        help="Socket timeout in seconds while fetching an image over "
             "http(s)."),
    cfg.IntOpt(
        "console_log_max_bytes",
        default=100 * 1024,
        min=1024,
        help="Most bytes of the serial console log returned by a console "
             "output request (the tail of the log)."),
    cfg.IntOpt(
        "keepalive_interval",
        default=5,
        min=-1,
        help="Seconds between libvirt keepalive probes on the agent's "
             "connection; -1 turns keepalive off."),
    cfg.IntOpt(
        "keepalive_count",
        default=3,
        min=0,
        help="Unanswered keepalive probes after which the connection is "
             "considered dead and closed."),
    cfg.FloatOpt(
        "reconnect_max_delay",
        default=10.0,
        min=0.1,
        help="Upper bound in seconds of the exponential backoff (with "
             "jitter) between two attempts to reconnect to libvirt."),
    cfg.IntOpt(
        "reconnect_timeout",
        default=60,
        min=1,
        help="Seconds a request waits for libvirt to come back before it "
             "fails with HypervisorUnavailable. The background reconnect "
             "after a lost connection keeps trying until the agent stops."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)


def list_opts() -> dict:
    return {libvirt_group: libvirt_opts}
