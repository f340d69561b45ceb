#!/bin/sh
# mmdebstrap customize hook: configure the services of the test image.
# $1 is the root of the tree being built.
set -eu
root=$1
# RabbitMQ: guest may log in from anywhere (the container's only client is
# the test host), AMQP on 5672.
mkdir -p "$root/etc/rabbitmq"
printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' \
    > "$root/etc/rabbitmq/rabbitmq.conf"
# PostgreSQL: listen on every address of the container, trust its clients
# (throwaway test data), socket in /tmp (the image has no /run/postgresql).
v=$(ls "$root/etc/postgresql")
conf="$root/etc/postgresql/$v/main"
printf "listen_addresses = '*'\nport = 5432\nexternal_pid_file = ''\nunix_socket_directories = '/tmp'\nssl = off\nfsync = on\n" \
    >> "$conf/postgresql.conf"
sed -i '1i host all all 0.0.0.0/0 trust' "$conf/pg_hba.conf"
ln -sf "/usr/lib/postgresql/$v/bin/postgres" "$root/usr/local/bin/postgres"
ln -sfn "/etc/postgresql/$v/main" "$root/etc/postgresql/main"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
