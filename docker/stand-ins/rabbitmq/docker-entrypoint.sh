#!/bin/bash
# Stand-in for the official image's entrypoint: the server runs in the foreground as user
# rabbitmq. RABBITMQ_DEFAULT_USER/PASS/VHOST and RABBITMQ_ERLANG_COOKIE are read by the
# server itself; the cookie is also written to the file the CLI tools (rabbitmqctl) read.
set -euo pipefail
if [[ ${1:-} == rabbitmq-server && $(id -u) -eq 0 ]]; then
    if [[ -n ${RABBITMQ_ERLANG_COOKIE:-} ]]; then
        printf '%s' "$RABBITMQ_ERLANG_COOKIE" >/var/lib/rabbitmq/.erlang.cookie
        chmod 400 /var/lib/rabbitmq/.erlang.cookie
    fi
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
fi
exec "$@"
