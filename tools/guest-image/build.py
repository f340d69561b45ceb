"""Build the tiny real Linux guest the integration tests boot.

    python3 tools/guest-image/build.py [--output FILE] [--force]

Prints the path of the qcow2 image (default
``~/.cache/flotilla/guest-image/guest.qcow2``), building it only when it is
missing (or with --force). Next to it: ``guest.qcow2.sha256`` and
``guest.json`` (kernel version, boot marker, minimum RAM).

What is in it (no loop devices, no mounts, a few seconds on a fresh machine):

* the kernel of the package ``linux-image-cloud-amd64`` depends on (fetched
  with ``apt-get download``, unpacked with ``dpkg-deb --fsys-tarfile``) and
  its virtio, virtio_blk, virtio_net, button, evdev and vfat modules,
  loaded with insmod in dependency order (read from each module's
  ``depends=``);
* a busybox initramfs whose /init prints to the serial console:
  BOOT_MARKER; INSTANCE_MARKER and its instance uuid (from SMBIOS);
  BOOT_COUNT_MARKER and a boot counter kept on the root disk (so snapshots
  and migrations carry it); /proc/partitions. It runs acpid (power button
  -> ``poweroff -f``; plain poweroff fails with a shell as PID 1), then
  every second: every change of /proc/partitions (a hot-plugged disk shows
  up); for each new disk but the root, DISK_MARKER with the instance uuid
  found in its first sector, after writing its own there if the disk was
  blank; DISK_SIZE_MARKER with a disk's size in bytes whenever it changes
  (an online extend); and every 5 s TICK_MARKER and a counter (the guest
  kept running across a live migration);
* a 64 MB FAT disk with syslinux (kernel, initramfs, syslinux.cfg),
  converted to qcow2 so the OS travels with snapshots and migrations.

Needs: apt, dpkg-deb, busybox-static, syslinux, syslinux-common, mtools,
dosfstools, qemu-utils. The guest needs at least MIN_RAM_MB of RAM and
``<features><acpi/></features>``.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

BOOT_MARKER = "FLOTILLA-GUEST-BOOTED"
PARTITIONS_MARKER = "FLOTILLA-PARTITIONS"
INSTANCE_MARKER = "FLOTILLA-INSTANCE"
BOOT_COUNT_MARKER = "FLOTILLA-BOOT-COUNT"
DISK_MARKER = "FLOTILLA-DISK-MARKER"
DISK_SIZE_MARKER = "FLOTILLA-DISK-SIZE"
TICK_MARKER = "FLOTILLA-TICK"
MARKERS = {"@BOOT_MARKER@": BOOT_MARKER, "@PARTITIONS_MARKER@": PARTITIONS_MARKER,
           "@INSTANCE_MARKER@": INSTANCE_MARKER, "@BOOT_COUNT_MARKER@": BOOT_COUNT_MARKER,
           "@DISK_MARKER@": DISK_MARKER, "@DISK_SIZE_MARKER@": DISK_SIZE_MARKER,
           "@TICK_MARKER@": TICK_MARKER}
MIN_RAM_MB = 80
DEFAULT_OUTPUT = os.path.join(os.path.expanduser("~"), ".cache", "flotilla",
                              "guest-image", "guest.qcow2")
META_PACKAGE = "linux-image-cloud-amd64"
WANTED_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "button", "evdev", "vfat",
                  "nls_cp437", "nls_ascii"]
PACKAGES = {"busybox-static": "/bin/busybox", "syslinux": "/usr/bin/syslinux",
            "mtools": "/usr/bin/mcopy", "dosfstools": "/sbin/mkfs.vfat",
            "qemu-utils": "/usr/bin/qemu-img"}
DISK_MB = 64

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /dev /proc /sys /tmp /mnt/root
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/console >/dev/console 2>&1
for m in $(cat /etc/modules.order); do insmod "/lib/modules/$m" || echo "insmod $m failed"; done
echo "@BOOT_MARKER@ $(uname -r)"
# Who am I: libvirt gives the guest its domain (instance) uuid through SMBIOS.
me=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null | tr A-Z a-z)
echo "@INSTANCE_MARKER@ ${me:-unknown}"
# The boot counter lives on the root disk (the FAT disk syslinux booted
# from), so a snapshot or a migration carries it.
if mount -t vfat /dev/vda /mnt/root 2>/dev/null; then
    count=$(cat /mnt/root/BOOTCNT 2>/dev/null || echo 0)
    count=$((count + 1))
    echo "$count" > /mnt/root/BOOTCNT
    sync
    umount /mnt/root
    echo "@BOOT_COUNT_MARKER@ $count"
else
    echo "@BOOT_COUNT_MARKER@ unknown (no FAT root disk)"
fi
echo "@PARTITIONS_MARKER@"
cat /proc/partitions
# Power button (needs the button and evdev modules): poweroff -f.
acpid -c /etc/acpi -l /dev/null

# Every disk but the root: a blank one gets this instance's marker in its
# first sector; whatever marker a disk carries is printed, with its size.
disk_report() {
    dev=$1
    head=$(dd if=/dev/$dev bs=512 count=1 2>/dev/null | tr -d '\000')
    if [ -z "$head" ]; then
        printf '@DISK_MARKER@ %s\n' "$me" | dd of=/dev/$dev bs=512 conv=sync 2>/dev/null
        sync
        echo "@DISK_MARKER@ $dev written ${me:-unknown}"
    else
        owner=$(echo "$head" | sed -n 's/^@DISK_MARKER@ \([0-9a-f-]*\).*/\1/p' | head -n 1)
        echo "@DISK_MARKER@ $dev found ${owner:-none}"
    fi
}
sizes=""
previous=$(cat /proc/partitions)
tick=0
while true; do
    now=""
    for path in /sys/block/vd*; do
        [ -e "$path" ] || continue
        dev=${path##*/}
        [ "$dev" = vda ] && continue
        bytes=$(( $(cat $path/size) * 512 ))
        now="$now $dev=$bytes"
        case " $sizes " in
            *" $dev="*) ;;
            *) disk_report $dev ;;
        esac
        case " $sizes " in
            *" $dev=$bytes "*) ;;
            *) echo "@DISK_SIZE_MARKER@ $dev $bytes" ;;
        esac
    done
    sizes="$now"
    current=$(cat /proc/partitions)
    if [ "$current" != "$previous" ]; then
        echo "@PARTITIONS_MARKER@ changed"
        echo "$current"
        previous=$current
    fi
    # A heartbeat on the console: it goes on counting across a live migration.
    tick=$((tick + 1))
    [ $((tick % 5)) -eq 0 ] && echo "@TICK_MARKER@ $tick"
    sleep 1
done
"""

POWER_OFF = "#!/bin/sh\necho 'power button: powering off'\npoweroff -f\n"

SYSLINUX_CFG = """DEFAULT flotilla
PROMPT 0
TIMEOUT 0
LABEL flotilla
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 quiet panic=-1
"""


def log(msg: str) -> None:
    print("guest-image: %s" % msg, file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def ensure_packages() -> None:
    missing = [pkg for pkg, path in PACKAGES.items() if not os.path.exists(path)]
    if missing:
        log("installing %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
             *missing], env=env, stdout=subprocess.DEVNULL)


def kernel_package() -> str:
    """The versioned kernel package the meta package depends on now."""
    out = run(["apt-cache", "depends", META_PACKAGE], capture_output=True,
              text=True).stdout
    match = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not match:
        raise RuntimeError("cannot resolve %s (apt-get update?)" % META_PACKAGE)
    return match.group(1)


def download_kernel(work: str) -> str:
    package = kernel_package()
    try:
        run(["apt-get", "download", "-q", package], cwd=work,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        log("apt-get download failed; apt-get update and retry")
        run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
        run(["apt-get", "download", "-q", package], cwd=work)
    debs = [f for f in os.listdir(work) if f.endswith(".deb")]
    return os.path.join(work, debs[0])


def unpack_kernel(deb: str, dest: str) -> str:
    """Extract the kernel and its modules; returns the kernel's path."""
    os.makedirs(dest)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb],
                           stdout=subprocess.PIPE)
    run(["tar", "-x", "-C", dest, "--wildcards", "./boot/vmlinuz-*",
         "./lib/modules/*"], stdin=tar.stdout)
    if tar.wait():
        raise RuntimeError("dpkg-deb --fsys-tarfile %s failed" % deb)
    boot = os.path.join(dest, "boot")
    return os.path.join(boot, [f for f in os.listdir(boot)
                               if f.startswith("vmlinuz-")][0])


def _module_name(filename: str) -> str:
    return filename.split(".ko")[0].replace("-", "_")


def _module_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return run(["zstd", "-dc", path], capture_output=True).stdout
    return data


def resolve_modules(modules_root: str, wanted: list[str]) -> list[tuple[str, bytes]]:
    """(name, uncompressed .ko) of ``wanted`` and their dependencies, each
    after everything it depends on (``depends=`` in the .modinfo section)."""
    paths = {}
    for dirpath, _dirs, files in os.walk(modules_root):
        for name in files:
            if ".ko" in name:
                paths[_module_name(name)] = os.path.join(dirpath, name)
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in paths:
            return  # built into the kernel
        data = _module_bytes(paths[name])
        match = re.search(rb"(?:^|\0)depends=([^\0]*)", data)
        for dep in (match.group(1).decode().split(",") if match else []):
            if dep:
                visit(dep.replace("-", "_"))
        ordered.append((name, data))

    for name in wanted:
        if name not in paths:
            raise RuntimeError("module %s is not in the kernel package" % name)
        visit(name)
    return ordered


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def build_initramfs(work: str, modules: list[tuple[str, bytes]]) -> str:
    root = os.path.join(work, "initramfs")
    for sub in ("bin", "dev", "proc", "sys", "tmp", "lib/modules", "etc/acpi"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    order = []
    for name, data in modules:
        with open(os.path.join(root, "lib", "modules", name + ".ko"), "wb") as f:
            f.write(data)
        order.append(name + ".ko")
    _write(os.path.join(root, "etc", "modules.order"), "\n".join(order) + "\n")
    init = INIT
    for placeholder, marker in MARKERS.items():
        init = init.replace(placeholder, marker)
    _write(os.path.join(root, "init"), init, 0o755)
    # busybox acpid maps the power button to the action PWRF/00000080
    # (a file is executed, a directory is run-parts'ed).
    for action in ("PWRF", "PWRB"):
        _write(os.path.join(root, "etc", "acpi", action, "00000080"),
               POWER_OFF, 0o755)
    out = os.path.join(work, "initrd.gz")
    files = run(["find", "."], cwd=root, capture_output=True).stdout
    cpio = run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=root,
               input=files, capture_output=True).stdout
    with gzip.open(out, "wb", compresslevel=9) as f:
        f.write(cpio)
    return out


def build_disk(work: str, kernel: str, initrd: str, output: str) -> None:
    raw = os.path.join(work, "disk.raw")
    with open(raw, "wb") as f:
        f.truncate(DISK_MB * 1024 * 1024)
    run(["mkfs.vfat", "-n", "FLOTILLA", raw], stdout=subprocess.DEVNULL)
    cfg = os.path.join(work, "syslinux.cfg")
    _write(cfg, SYSLINUX_CFG)
    shutil.copy2(kernel, os.path.join(work, "vmlinuz"))
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    run(["mcopy", "-i", raw, os.path.join(work, "vmlinuz"), initrd, cfg, "::"],
        env=env)
    run(["syslinux", "--install", raw])
    run(["qemu-img", "convert", "-q", "-O", "qcow2", raw, output])


def build(output: str) -> dict:
    ensure_packages()
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as work:
        os.chmod(work, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP
                 | stat.S_IROTH | stat.S_IXOTH)  # apt's _apt user reads it
        deb = download_kernel(work)
        kernel = unpack_kernel(deb, os.path.join(work, "kernel"))
        version = os.path.basename(kernel)[len("vmlinuz-"):]
        modules = resolve_modules(os.path.join(work, "kernel", "lib", "modules"),
                                  WANTED_MODULES)
        log("kernel %s, modules %s" % (version, " ".join(n for n, _ in modules)))
        initrd = build_initramfs(work, modules)
        partial = os.path.join(work, "guest.qcow2")
        build_disk(work, kernel, initrd, partial)
        with open(partial, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        meta = {"image": os.path.abspath(output), "sha256": digest,
                "kernel": version, "recipe": recipe_digest(),
                "boot_marker": BOOT_MARKER, "partitions_marker": PARTITIONS_MARKER,
                "instance_marker": INSTANCE_MARKER,
                "boot_count_marker": BOOT_COUNT_MARKER, "disk_marker": DISK_MARKER,
                "disk_size_marker": DISK_SIZE_MARKER, "tick_marker": TICK_MARKER,
                "min_ram_mb": MIN_RAM_MB,
                "modules": [n for n, _ in modules]}
        os.replace(partial, output)  # atomic: a present image is complete
    _write(output + ".sha256", "%s  %s\n" % (digest, os.path.basename(output)))
    _write(os.path.join(out_dir, "guest.json"), json.dumps(meta, indent=2))
    return meta


def recipe_digest() -> str:
    """What the image is made of, so a changed recipe rebuilds a cached one."""
    recipe = json.dumps([INIT, sorted(MARKERS.items()), WANTED_MODULES, SYSLINUX_CFG,
                         POWER_OFF, DISK_MB])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def ensure(output: str = DEFAULT_OUTPUT, force: bool = False) -> dict:
    """The image's metadata, building the image when missing or made from
    another recipe."""
    out_dir = os.path.dirname(os.path.abspath(output))
    meta_path = os.path.join(out_dir, "guest.json")
    os.makedirs(out_dir, exist_ok=True)
    # One build at a time (test workers may ask at once): the others wait,
    # then find it built.
    with open(os.path.join(out_dir, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and os.path.exists(output) and os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get("image") == os.path.abspath(output) \
                    and meta.get("recipe") == recipe_digest():
                return meta
        log("building %s" % output)
        return build(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--force", action="store_true",
                        help="rebuild even when the image exists")
    parser.add_argument("--json", action="store_true",
                        help="print the metadata instead of the path")
    args = parser.parse_args(argv)
    meta = ensure(args.output, args.force)
    print(json.dumps(meta, indent=2) if args.json else meta["image"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
