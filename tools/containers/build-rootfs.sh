#!/usr/bin/env bash
# Build the root filesystem of Flotilla's test-services image from Debian
# packages (no image registry needed): RabbitMQ and PostgreSQL in one tree.
# Usage: build-rootfs.sh OUT.tar
# The machine's own apt sources are used, so no mirror is named here.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
tmp="$out.tmp-$$"
trap 'rm -f "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --format=tar \
    --include=rabbitmq-server,postgresql,iproute2 \
    --customize-hook="$here/rootfs-hook.sh \"\$1\"" \
    "$suite" "$tmp" "$sources"
mv "$tmp" "$out"
trap - EXIT
