#!/usr/bin/env bash
# Wait until every running service of the compose project is healthy (or has no health check).
# Fails, with the unhealthy services' last log lines, after WAIT_TIMEOUT seconds (default 240).
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
COMPOSE=${COMPOSE:-docker-compose}
deadline=$(( $(date +%s) + ${WAIT_TIMEOUT:-240} ))
while :; do
  mapfile -t ids < <($COMPOSE ps -q)
  [ ${#ids[@]} -gt 0 ] || { echo "error: no containers are running: run 'make up'" >&2; exit 1; }
  waiting=()
  for id in "${ids[@]}"; do
    state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
    read -r name status health <<<"$state"
    if [ "$status" = exited ] || [ "$status" = dead ]; then
      echo "error: ${name#/} is $status" >&2; docker logs --tail 20 "$id" >&2; exit 1
    fi
    [ "$health" = healthy ] || [ "$health" = none ] || waiting+=("${name#/}:$health")
  done
  [ ${#waiting[@]} -eq 0 ] && { echo "healthy: ${#ids[@]} containers"; exit 0; }
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "error: not healthy within ${WAIT_TIMEOUT:-240} s: ${waiting[*]}" >&2
    for id in "${ids[@]}"; do docker logs --tail 10 "$id" >&2 || true; done
    exit 1
  fi
  sleep 2
done
