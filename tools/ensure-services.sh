#!/usr/bin/env bash
# Make sure what the test tiers need is installed and running on this
# machine: RabbitMQ, PostgreSQL (with the `test` database), libvirt and QEMU.
# Installs with apt what is absent, starts what is stopped. Idempotent.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-services: needs root to install or start $1" >&2
        exit 1
    fi
}

apt_updated=0
apt_install() {
    need_root "$*"
    if [ "$apt_updated" = 0 ]; then
        apt-get update -q >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- packages ---------------------------------------------------------------
missing=()
for pkg in rabbitmq-server postgresql libvirt-daemon libvirt-daemon-driver-qemu \
           libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config \
           busybox-static syslinux syslinux-common mtools dosfstools systemd \
           docker.io mmdebstrap nftables; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ensure-services: installing ${missing[*]}"
    apt_install "${missing[@]}"
fi
# Debian's libvirtd expects this user to exist even when qemu runs as root.
id libvirt-qemu >/dev/null 2>&1 || useradd --system --no-create-home \
    --shell /usr/sbin/nologin libvirt-qemu

# --- RabbitMQ ---------------------------------------------------------------
if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "ensure-services: starting RabbitMQ"
    need_root RabbitMQ
    rabbitmq-server -detached
    for _ in $(seq 1 60); do
        rabbitmqctl -q await_startup >/dev/null 2>&1 && break
        sleep 1
    done
    rabbitmqctl -q await_startup >/dev/null 2>&1 \
        || { echo "ensure-services: RabbitMQ did not start" >&2; exit 1; }
fi

# --- PostgreSQL -------------------------------------------------------------
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_ready; then
    echo "ensure-services: starting PostgreSQL"
    need_root PostgreSQL
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "ensure-services: PostgreSQL did not start" >&2; exit 1; }
fi
# Tests connect as postgres over TCP to the database `test`.
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    need_root "PostgreSQL access"
    su postgres -c "psql -Atc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
        || su postgres -c "createdb test"
    # Trust loopback for the test database (this is a test machine).
    hba=$(su postgres -c "psql -Atc 'show hba_file'")
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
    fi
fi
# docker.io's own daemon is not started: tools/containers/ctl.py runs a
# dockerd of the project's own when the container tests need it.
echo "ensure-services: RabbitMQ, PostgreSQL, libvirt, QEMU and docker are ready"
