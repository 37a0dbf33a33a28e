#!/bin/bash
# The compose stacks' RabbitMQ entrypoint, for the official image and its stand-in alike:
# writes the users of the three roles (definitions imported at boot) and the cluster's
# Erlang cookie from the environment, then runs the image's own entrypoint.
#
#   RABBITMQ_ADMIN_USER/_PASSWORD       administrator: the management UI, nothing else
#   RABBITMQ_PRODUCER_USER/_PASSWORD    producers: publish tasks, read their own replies
#   RABBITMQ_WORKER_USER/_PASSWORD      workers: their queues, results, control
#   CELERY_TASKS_ERLANG_COOKIE          the cookie every node of a cluster shares (optional)
set -euo pipefail

die() { echo "celery-tasks-entrypoint: error: $*" >&2; exit 1; }
for name in RABBITMQ_ADMIN_USER RABBITMQ_ADMIN_PASSWORD RABBITMQ_PRODUCER_USER \
            RABBITMQ_PRODUCER_PASSWORD RABBITMQ_WORKER_USER RABBITMQ_WORKER_PASSWORD; do
    [[ -n ${!name:-} ]] || die "$name is not set (see .env.example)"
done
json() {  # a JSON string: backslashes and quotes escaped
    local text=${1//\\/\\\\}
    printf '"%s"' "${text//\"/\\\"}"
}

# Producers' reply queues: this project's, and Celery's rpc:// queue (a UUID).
uuid='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
replies="^(celery_tasks\\\\.reply\\\\..+|$uuid)\$"
# A producer may publish to task exchanges (and Celery's delayed-delivery exchange), never to
# the default exchange (it reaches every queue), a reply queue, a dead-letter exchange or
# the workers' control exchanges; it may declare and consume only its own reply queues, so
# it can neither consume nor delete a task queue.
producer_write="^(?!amq\\\\.|celery_tasks\\\\.|celeryev|celery\\\\.pidbox|reply\\\\.celery\\\\.pidbox)(?!.*\\\\.dead\$).+"
# A worker may do anything on this vhost but declare or consume a producer's reply queue.
worker_own="^(?!celery_tasks\\\\.reply\\\\.)(?!$uuid\$).+"

definitions=/etc/rabbitmq/celery-tasks-definitions.json
umask 027
cat >"$definitions" <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [
    {"name": $(json "$RABBITMQ_ADMIN_USER"), "password": $(json "$RABBITMQ_ADMIN_PASSWORD"), "tags": ["administrator"]},
    {"name": $(json "$RABBITMQ_PRODUCER_USER"), "password": $(json "$RABBITMQ_PRODUCER_PASSWORD"), "tags": []},
    {"name": $(json "$RABBITMQ_WORKER_USER"), "password": $(json "$RABBITMQ_WORKER_PASSWORD"), "tags": []}
  ],
  "permissions": [
    {"user": $(json "$RABBITMQ_ADMIN_USER"), "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": $(json "$RABBITMQ_PRODUCER_USER"), "vhost": "/", "configure": "$replies", "write": "$producer_write", "read": "$replies"},
    {"user": $(json "$RABBITMQ_WORKER_USER"), "vhost": "/", "configure": "$worker_own", "write": ".*", "read": "$worker_own"}
  ]
}
JSON
chgrp rabbitmq "$definitions"

# The cookie exists, owned by rabbitmq, before anything starts: otherwise the healthcheck's
# CLI (run as root) could create its own first, unreadable by the server, which then fails
# to start (eacces) when it is slow to boot.
cookie=/var/lib/rabbitmq/.erlang.cookie
if [[ -n ${CELERY_TASKS_ERLANG_COOKIE:-} ]]; then
    rm -f "$cookie"
    printf '%s' "$CELERY_TASKS_ERLANG_COOKIE" >"$cookie"
elif [[ ! -s $cookie ]]; then
    rm -f "$cookie"
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$cookie"
fi
chown rabbitmq:rabbitmq "$cookie"
chmod 400 "$cookie"
unset RABBITMQ_ADMIN_PASSWORD RABBITMQ_PRODUCER_PASSWORD RABBITMQ_WORKER_PASSWORD \
      CELERY_TASKS_ERLANG_COOKIE
exec docker-entrypoint.sh "$@"
