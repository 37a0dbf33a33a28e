#!/usr/bin/env bash
# Write the three standalone repositories as bare git repos under DEST:
#   DEST/celery_tasks.git  DEST/producer.git  DEST/consumer.git
# Each carries its folder's history, split from this repository with `git subtree split`.
# producer and consumer keep celery_tasks as a submodule with URL ../celery_tasks.git
# (their own .gitmodules), pinned to commits that celery_tasks.git holds.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
die() { echo "error: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: make export DEST=folder"; fi
mkdir -p "$1"
dest=$(cd "$1" && pwd)
cd "$(git rev-parse --show-toplevel)"

for repo in celery_tasks producer consumer; do
  [ ! -e "$dest/$repo.git" ] || die "$dest/$repo.git already exists: choose an empty DEST"
done
for repo in celery_tasks producer consumer; do
  sha=$(git subtree split --prefix="$repo" -q)  # without --rejoin: this repository is untouched
  [ -n "$sha" ] || die "git subtree split printed nothing for $repo/"
  git init --quiet --bare --initial-branch=main "$dest/$repo.git"
  git push --quiet "$dest/$repo.git" "$sha:refs/heads/main"
  echo "exported $repo/ as $dest/$repo.git (main at ${sha:0:12})"
done
for repo in producer consumer; do
  pin=$(git --git-dir="$dest/$repo.git" rev-parse main:celery_tasks)
  git --git-dir="$dest/celery_tasks.git" cat-file -e "$pin^{commit}" 2>/dev/null ||
    die "$repo pins celery_tasks ${pin:0:12}, which celery_tasks.git lacks: run 'make vendor'"
done
echo "clone with: git clone $dest/producer.git && cd producer && git -c protocol.file.allow=always submodule update --init"
