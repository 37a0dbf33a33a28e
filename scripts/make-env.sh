#!/usr/bin/env bash
# Create or complete .env for docker-compose from .env.example: every key .env lacks is
# added, each password and the Erlang cookie a fresh random value. Values already in .env
# are kept, so an older .env gains the keys of newer versions.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
cd "$(git rev-parse --show-toplevel)"
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
[ -e .env ] || { : > .env; chmod 600 .env; echo "created .env"; }
added=()
while IFS='=' read -r key value; do
  [[ $key =~ ^[A-Z_]+$ ]] || continue  # comments, blank lines and commented-out keys
  grep -q "^$key=" .env && continue
  case $key in *_PASSWORD|*_COOKIE) value=$(random) ;; esac
  printf '%s=%s\n' "$key" "$value" >> .env
  added+=("$key")
done < .env.example
if [ ${#added[@]} -gt 0 ]; then echo "added to .env: ${added[*]} (passwords and cookie random)"; fi
