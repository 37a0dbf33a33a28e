#!/usr/bin/env bash
# Fail while a submodule pin's tree differs from celery_tasks/ at HEAD (run `make vendor`).
# `make check-vendor` runs it; `make test` too. Exit 0 when both pins match, 1 otherwise.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
cd "$(git rev-parse --show-toplevel)"

source_tree=$(git rev-parse HEAD:celery_tasks)
status=0
for part in producer consumer; do
  pin=$(git rev-parse "HEAD:$part/celery_tasks" 2>/dev/null) ||
    { echo "error: $part/celery_tasks is not a submodule at HEAD" >&2; status=1; continue; }
  if git cat-file -e "$pin^{tree}" 2>/dev/null; then
    pin_tree=$(git rev-parse "$pin^{tree}")
  elif [ -e "$part/celery_tasks/.git" ]; then
    pin_tree=$(git -C "$part/celery_tasks" rev-parse "$pin^{tree}")
  else
    echo "error: $part/celery_tasks pins ${pin:0:12}, which is not here: run 'make init'" >&2
    status=1; continue
  fi
  if [ "$pin_tree" != "$source_tree" ]; then
    echo "error: $part/celery_tasks pins ${pin:0:12}, whose tree differs from celery_tasks/ at HEAD: run 'make vendor'" >&2
    status=1
  else
    echo "ok: $part/celery_tasks pins ${pin:0:12} = celery_tasks/ at HEAD"
  fi
done
exit $status
