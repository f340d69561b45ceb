"""[volume] options: the volume service (flotilla-volume) and its backend."""

from __future__ import annotations

from oslo_config import cfg

volume_group = cfg.OptGroup(
    "volume", title="Volume service options",
    help="flotilla-volume: block volumes in a libvirt storage pool on the "
         "volume host, exported over NBD by one qemu-storage-daemon.")

volume_opts = [
    cfg.StrOpt("backend", default="libvirt_pool", choices=["libvirt_pool"],
               help="Where volumes live. libvirt_pool: a directory storage pool "
                    "of the libvirt daemon at connection_uri."),
    cfg.StrOpt("connection_uri", default="qemu:///system",
               help="libvirt daemon holding the storage pool (a rig host's "
                    "qemu+tcp URI on the test rig)."),
    cfg.StrOpt("pool_name", default="flotilla-volumes",
               help="Name of the libvirt storage pool; created (a dir pool at "
                    "pool_path) when missing."),
    cfg.StrOpt("pool_path", default="$state_path/volumes",
               help="Directory of the storage pool. qemu-storage-daemon opens "
                    "the volume files here, so it must be the same path for "
                    "libvirtd and for the volume service."),
    cfg.StrOpt("nbd_host", default="127.0.0.1",
               help="Address the NBD server listens on and compute hosts "
                    "connect to. Without nbd_tls, plain NBD: use only on a "
                    "trusted storage network."),
    cfg.PortOpt("nbd_port", default=10809,
                help="TCP port of the NBD server."),
    cfg.BoolOpt("nbd_tls", default=False,
                help="Serve the NBD exports over TLS only, to clients holding a "
                     "certificate signed by the CA in nbd_tls_x509_dir (the "
                     "compute hosts' libvirt: qemu.conf nbd_tls_x509_cert_dir "
                     "with ca-cert.pem, client-cert.pem, client-key.pem). The "
                     "attachments made while it is on tell the compute hosts "
                     "to connect with TLS."),
    cfg.StrOpt("nbd_tls_x509_dir", default="/etc/pki/qemu",
               help="Directory of the NBD server's TLS files, in QEMU's layout: "
                    "ca-cert.pem (the CA client certificates must be signed "
                    "by), server-cert.pem (naming nbd_host) and server-key.pem. "
                    "Used only with nbd_tls; each must be readable at start."),
    cfg.StrOpt("storage_daemon", default="qemu-storage-daemon",
               help="The qemu-storage-daemon binary."),
    cfg.StrOpt("run_path", default="$state_path/volume-run",
               help="Directory of the storage daemon's QMP socket, pid file and log."),
    cfg.IntOpt("detach_timeout", default=30, min=1,
               help="Seconds a compute host waits for a guest to release a "
                    "detached volume's disk (the request is repeated every few "
                    "seconds) before the detach fails."),
    cfg.IntOpt("operation_timeout", default=300, min=10,
               help="Seconds a volume may stay in a transitional status "
                    "(creating, attaching, detaching, deleting, reserved) "
                    "before the reaper ends it in error."),
    cfg.IntOpt("storage_daemon_check_interval", default=5, min=0,
               help="Seconds between two checks that the storage daemon answers; "
                    "one that died is started again and the attached volumes "
                    "exported again (0: never check)."),
    cfg.IntOpt("max_size_gb", default=1024, min=1,
               help="Largest volume a request may ask for, in GiB."),
    cfg.FloatOpt("max_over_subscription_ratio", default=1.0, min=1.0,
                 help="How far a volume host's backend may be provisioned beyond "
                      "its size (Cinder's option of that name, for thin volumes): "
                      "a new volume or snapshot goes on a host only while the "
                      "sizes of the volumes and snapshots there, plus it, stay "
                      "within total x ratio, and it is no larger than free x "
                      "ratio. Volumes are sparse files, so above 1.0 the pool "
                      "may fill up as guests write; 1.0 never overcommits."),
    cfg.IntOpt("capacity_report_interval", default=10, min=0,
               help="Seconds between two reports of the backend's total, free "
                    "and allocated bytes into the database, which volume "
                    "placement reads (also reported at start; 0: only then)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(volume_group)
    conf.register_opts(volume_opts, group=volume_group)


def list_opts() -> dict:
    return {volume_group: volume_opts}
