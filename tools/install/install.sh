#!/usr/bin/env bash
# Install Flotilla on a Debian host the operator's way (as root):
#
#   tools/install/install.sh [--prefix /opt/flotilla] [--wheels DIR]
#                            [--config FILE] [--libvirt-group libvirt] [--no-db-sync]
#
# 1. a virtualenv at PREFIX (/opt/flotilla) with Flotilla and its
#    dependencies, built from this source tree (pip, from PyPI), or with
#    --wheels DIR from wheels only (`pip wheel . -w DIR` on a build host;
#    no network needed);
# 2. the system user and group `flotilla` (home /var/lib/flotilla, no
#    login), added to the group `libvirt` where that group exists (compute
#    and volume hosts reaching qemu:///system; --libvirt-group '' skips it);
# 3. /etc/flotilla/flotilla.conf (root:flotilla 0640): FILE with --config,
#    else the sample with every option commented out (an existing file is
#    never overwritten without --config);
# 4. the README as /usr/share/doc/flotilla/README.md (the units'
#    Documentation=) and the units in /etc/systemd/system/ (daemon-reload
#    when systemd runs);
# 5. `flotilla-manage db sync` as the flotilla user, once the configuration
#    is not the untouched sample (it needs [database] connection).
#
# It enables and starts nothing: which daemons run is the host's role (see
# the README, "Operators"). Re-running it upgrades Flotilla in place.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PREFIX=/opt/flotilla
WHEELS=
CONFIG=
LIBVIRT_GROUP=libvirt
DB_SYNC=1
ETC=/etc/flotilla
UNITDIR=/etc/systemd/system
DOCDIR=/usr/share/doc/flotilla

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --libvirt-group) LIBVIRT_GROUP=$2; shift 2 ;;
        --no-db-sync) DB_SYNC=0; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run it as root"
[ -f "$SRC/setup.cfg" ] || die "$SRC is not the Flotilla source tree"
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "--config $CONFIG: no such file"
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || die "--wheels $WHEELS: no such directory"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 must be 3.11 or newer"
python3 -c 'import ensurepip' 2>/dev/null \
    || die "python3 cannot create a virtualenv: apt-get install python3-venv"
# The image API checks every uploaded image with qemu-img, and compute hosts
# make their disks with it.
command -v qemu-img >/dev/null || die "qemu-img is missing: apt-get install qemu-utils"
if [ -z "$WHEELS" ]; then
    # libvirt-python has no wheels on PyPI: pip compiles it here.
    missing=()
    { command -v pkg-config >/dev/null && pkg-config --exists libvirt; } \
        || missing+=(pkg-config libvirt-dev)
    command -v gcc >/dev/null || missing+=(gcc)
    python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || missing+=(python3-dev)
    [ "${#missing[@]}" -eq 0 ] || die "building libvirt-python needs:" \
        "apt-get install ${missing[*]} (or build wheels elsewhere and use --wheels DIR)"
fi

# --- 1. the virtualenv -----------------------------------------------------------
if [ ! -x "$PREFIX/bin/python" ]; then
    say "creating the virtualenv $PREFIX"
    python3 -m venv "$PREFIX"
    fresh=1
else
    fresh=0
fi
if [ -n "$WHEELS" ]; then
    pip_args=(--no-index --find-links "$WHEELS")
    project=flotilla
else
    pip_args=()
    project=$SRC
fi
say "installing Flotilla into $PREFIX${WHEELS:+ from the wheels in $WHEELS}"
"$PREFIX/bin/pip" install -q --disable-pip-version-check "${pip_args[@]}" "$project"
if [ "$fresh" = 0 ]; then
    # Same version number, new code: replace the project, keep the rest.
    "$PREFIX/bin/pip" install -q --disable-pip-version-check "${pip_args[@]}" \
        --force-reinstall --no-deps "$project"
fi

# --- 2. the user -----------------------------------------------------------------
if ! getent group flotilla >/dev/null; then
    groupadd --system flotilla
fi
if ! getent passwd flotilla >/dev/null; then
    say "creating the system user flotilla"
    useradd --system --gid flotilla --home-dir /var/lib/flotilla --no-create-home \
        --shell /usr/sbin/nologin --comment "Flotilla daemons" flotilla
fi
if [ -n "$LIBVIRT_GROUP" ] && getent group "$LIBVIRT_GROUP" >/dev/null; then
    say "adding flotilla to the group $LIBVIRT_GROUP (libvirtd's socket)"
    usermod --append --groups "$LIBVIRT_GROUP" flotilla
fi
install -d -o flotilla -g flotilla -m 0755 /var/lib/flotilla

# --- 3. the configuration ----------------------------------------------------------
sample="$SRC/etc/flotilla/flotilla.conf.sample"
install -d -o root -g flotilla -m 0750 "$ETC"
if [ -n "$CONFIG" ]; then
    say "installing $CONFIG as $ETC/flotilla.conf"
    install -o root -g flotilla -m 0640 "$CONFIG" "$ETC/flotilla.conf"
elif [ ! -e "$ETC/flotilla.conf" ]; then
    say "installing the sample as $ETC/flotilla.conf: edit it"
    install -o root -g flotilla -m 0640 "$sample" "$ETC/flotilla.conf"
fi
install -D -o root -g root -m 0644 "$sample" "$DOCDIR/flotilla.conf.sample"

# --- 4. documentation and units ----------------------------------------------------
install -D -o root -g root -m 0644 "$SRC/README.md" "$DOCDIR/README.md"
for unit in "$SRC"/etc/systemd/*.service; do
    sed "s|/opt/flotilla/|$PREFIX/|g" "$unit" > "$UNITDIR/$(basename "$unit").new"
    chmod 0644 "$UNITDIR/$(basename "$unit").new"
    mv "$UNITDIR/$(basename "$unit").new" "$UNITDIR/$(basename "$unit")"
done
say "units installed in $UNITDIR"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

# --- 5. the database schema --------------------------------------------------------
if [ "$DB_SYNC" = 1 ]; then
    if cmp -s "$sample" "$ETC/flotilla.conf"; then
        say "$ETC/flotilla.conf is still the sample: set [database] connection," \
            "[DEFAULT] transport_url and the rest, then run" \
            "runuser -u flotilla -- $PREFIX/bin/flotilla-manage db sync"
    else
        say "flotilla-manage db sync"
        (cd / && runuser -u flotilla -- "$PREFIX/bin/flotilla-manage" \
            --config-file "$ETC/flotilla.conf" db sync)
    fi
fi

say "done. Start the daemons this host runs, e.g.:"
say "  systemctl enable --now flotilla-conductor flotilla-scheduler flotilla-api"
say "  systemctl enable --now flotilla-compute      # hypervisor hosts"
say "  systemctl enable --now flotilla-volume       # volume hosts (libvirtd, qemu-storage-daemon)"
