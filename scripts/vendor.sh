#!/usr/bin/env bash
# Split celery_tasks/ out of this repository and pin both submodules to the split commit,
# and write the contracts' table into docs/contracts.md, in the same commit.
#
# `git subtree split --rejoin` makes a commit whose tree is celery_tasks/ alone and merges
# that history back into the current branch, so every pinned commit is reachable from main
# and a fresh clone can check the submodules out. Both gitlinks are then bumped in one commit.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
cd "$(git rev-parse --show-toplevel)"

die() { echo "error: $*" >&2; exit 1; }

git diff --quiet HEAD -- celery_tasks || die "celery_tasks/ has uncommitted changes: commit them first"
[ -z "$(git ls-files --others --exclude-standard -- celery_tasks)" ] ||
  die "celery_tasks/ has untracked files: commit or remove them first"
git diff --cached --quiet || die "the index has staged changes: commit or unstage them first"
# `--rejoin` merges into the current branch, which git refuses with a modified work tree.
git diff --quiet HEAD || die "the work tree has uncommitted changes: commit or stash them first"

sha=$(git subtree split --prefix=celery_tasks --rejoin -q \
  -m "Split celery_tasks/ for the producer and consumer submodules")
[ -n "$sha" ] || die "git subtree split printed no commit"

for part in producer consumer; do
  git config -f .gitmodules "submodule.$part/celery_tasks.path" "$part/celery_tasks"
  git config -f .gitmodules "submodule.$part/celery_tasks.url" ./
  git update-index --add --cacheinfo "160000,$sha,$part/celery_tasks"
done
git add .gitmodules
git -c protocol.file.allow=always submodule sync --quiet
# The new pin exists only here (not yet on any remote): check it out from this repository.
git -c protocol.file.allow=always submodule update --init --quiet -- \
  producer/celery_tasks consumer/celery_tasks 2>/dev/null || true
for part in producer consumer; do
  [ -e "$part/celery_tasks/.git" ] || die "$part/celery_tasks is not checked out: run 'make init'"
  git -C "$part/celery_tasks" fetch --quiet "$PWD" HEAD
  git -C "$part/celery_tasks" checkout --quiet --detach "$sha"
done

# The docs' table of contracts, from the contracts themselves.
# PYTHON: one that has celery_tasks' requirements (make vendor passes the venv's).
python=${PYTHON:-python3}
[ -n "${PYTHON:-}" ] || [ ! -x .venv/bin/python ] || python=.venv/bin/python
"$python" scripts/docs-contracts.py || die "cannot write docs/contracts.md with $python"
git add docs/contracts.md

if git diff --cached --quiet; then
  echo "celery_tasks: both pins already at ${sha:0:12}"
else
  git commit --quiet -m "Vendor celery_tasks ${sha:0:12} into producer and consumer" \
    -m "Both submodules now pin the commit split from celery_tasks/ at $(git rev-parse --short HEAD)."
  echo "celery_tasks: producer and consumer pinned to ${sha:0:12}"
fi
