#!/usr/bin/env bash
# Build offline stand-ins for the public base images from Debian packages, with no image
# registry: python:3.11-slim (bookworm's python3), rabbitmq:4.3-management (sid's
# rabbitmq-server 4.3), redis:7 and postgres:15 (bookworm's) for the harness's services, and
# prom/prometheus:v2.42.0 (bookworm's prometheus) for the compose stack's monitoring profile.
#
#   eval "$(docker/engine.sh start DIR)"     # or any engine in DOCKER_HOST
#   docker/build-stand-ins.sh [--force] [--refresh-rootfs] [--also-tag-official] [python|rabbitmq|redis|postgres|prometheus ...]
#
# Steps: debootstrap --variant=minbase of each suite (cached as a tarball) -> docker import
# -> docker build --network host of docker/stand-ins/NAME. Prints the tags and
# PYTHON_IMAGE=... / RABBITMQ_IMAGE=... lines at the end (stdout; progress goes to stderr).
#
# Environment:
#   CELERY_TASKS_DOCKER_CACHE  rootfs tarball cache dir (default /var/tmp/celery-tasks-docker-cache)
#   DEBIAN_MIRROR              override the mirror (default: the host apt's bookworm mirror)
#   HOST_CA_BUNDLE             CA bundle copied into the images (default /etc/ssl/certs/ca-certificates.crt)
#   TAG_PREFIX                 image name prefix (default celery-tasks)
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

PREFIX=${TAG_PREFIX:-celery-tasks}
# name -> the public image it stands in for; name -> the suite and packages of its rootfs
declare -A OFFICIAL=([python]=python:3.11-slim [rabbitmq]=rabbitmq:4.3-management
                     [redis]=redis:7 [postgres]=postgres:15
                     [prometheus]=prom/prometheus:v2.42.0)
# redis, postgres and prometheus share python's rootfs and install their package in the
# image build.
declare -A SUITE=([python]=bookworm [rabbitmq]=sid [redis]=bookworm [postgres]=bookworm
                  [prometheus]=bookworm)
declare -A INCLUDE=([python]=ca-certificates [rabbitmq]=ca-certificates,rabbitmq-server
                    [redis]=ca-certificates [postgres]=ca-certificates
                    [prometheus]=ca-certificates)
declare -A VARIABLE=([python]=PYTHON_IMAGE [rabbitmq]=RABBITMQ_IMAGE
                     [redis]=HARNESS_REDIS_IMAGE [postgres]=HARNESS_POSTGRES_IMAGE
                     [prometheus]=PROMETHEUS_IMAGE)

usage() {
    cat <<USAGE
usage: $PROG [--force] [--refresh-rootfs] [--also-tag-official] [python|rabbitmq|redis|postgres|prometheus ...]
  Builds into the engine named by DOCKER_HOST (see docker/engine.sh env DIR):
    $PREFIX/python:3.11-slim          (bookworm: python3 venv at /usr/local, host CA, pip config)
    $PREFIX/rabbitmq:4.3-management   (sid: rabbitmq-server 4.3, management and Prometheus plugins)
    $PREFIX/redis:7, $PREFIX/postgres:15  (bookworm: redis-server 7.0, postgresql-15)
    $PREFIX/prometheus:v2.42.0        (bookworm: prometheus 2.42 and promtool)
  --force              rebuild the stand-ins even if the tags exist (reuses the rootfs)
  --refresh-rootfs     re-run debootstrap and re-import the rootfs (implies --force)
  --also-tag-official  also tag the results with the public names (python:3.11-slim, ...)
  Cache dir: \${CELERY_TASKS_DOCKER_CACHE:-/var/tmp/celery-tasks-docker-cache}
USAGE
}

FORCE=0 REFRESH=0 TAG_OFFICIAL=0 WANT=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --force) FORCE=1 ;;
        --refresh-rootfs) REFRESH=1 FORCE=1 ;;
        --also-tag-official) TAG_OFFICIAL=1 ;;
        python|rabbitmq|redis|postgres|prometheus) WANT+=("$1") ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[[ ${#WANT[@]} -gt 0 ]] || WANT=(python rabbitmq redis postgres prometheus)

CACHE=${CELERY_TASKS_DOCKER_CACHE:-/var/tmp/celery-tasks-docker-cache}
CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
TIMINGS=()

# prom/prometheus:v2.42.0 -> $PREFIX/prometheus:v2.42.0 (the official name without its owner)
tag_of() { local official=${OFFICIAL[$1]}; echo "$PREFIX/${official##*/}"; }

# ---------------------------------------------------------------- preflight
command -v docker >/dev/null || die "docker CLI not found (run docker/engine.sh start DIR first)"
[[ -n ${DOCKER_HOST:-} ]] || log "warning: DOCKER_HOST is not set; using the default engine"
timeout 20 docker info >/dev/null 2>&1 ||
    die "no Docker engine answers at ${DOCKER_HOST:-default socket}; run: eval \"\$(docker/engine.sh start DIR)\""
[[ -r $CA_BUNDLE ]] || die "CA bundle not readable: $CA_BUNDLE (set HOST_CA_BUNDLE)"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ct-stand-ins.XXXXXX")
cleanup() {
    # a debootstrap target may contain mounted /proc or /sys if debootstrap was interrupted
    local root m
    for root in "$WORK"/rootfs-*; do
        [[ -d $root ]] || continue
        for m in proc sys dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- host apt settings
# First bookworm (not -updates/-security) mirror from the host's apt sources.
host_mirror() {
    local f
    # one-line format: deb [opts] URL bookworm main
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while (i<=NF && $i !~ /\]$/) i++; i++ }
                         if ($(i+1)=="bookworm") { print $i; exit } }' "$f"
    done >"$WORK/mirrors.txt" 2>/dev/null || true
    # deb822 format (.sources): paragraphs with URIs:/Suites:
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk 'BEGIN{RS=""; FS="\n"}
             { uri=""; ok=0; deb=0; en=1
               for (i=1;i<=NF;i++) {
                 if ($i ~ /^URIs:/)    { split(substr($i,6),u," "); uri=u[1] }
                 if ($i ~ /^Suites:/)  { n=split(substr($i,8),s," "); for(j=1;j<=n;j++) if (s[j]=="bookworm") ok=1 }
                 if ($i ~ /^Types:/ && $i ~ /(^|[ :])deb( |$)/) deb=1
                 if ($i ~ /^Enabled: *no/) en=0 }
               if (uri!="" && ok && deb && en) { print uri; exit } }' "$f"
    done >>"$WORK/mirrors.txt" 2>/dev/null || true
    local first=""
    read -r first <"$WORK/mirrors.txt" || true
    [[ -n $first ]] || return 1
    echo "$first"
}

# Security mirror for bookworm-security, if the host uses one.
host_security_mirror() {
    { grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        awk '{ for(i=2;i<NF;i++) if ($(i+1)=="bookworm-security") { print $i; exit } }'
      for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk 'BEGIN{RS=""; FS="\n"}
             { uri=""; ok=0
               for (i=1;i<=NF;i++) {
                 if ($i ~ /^URIs:/)   { split(substr($i,6),u," "); uri=u[1] }
                 if ($i ~ /^Suites:/ && $i ~ /bookworm-security/) ok=1 }
               if (uri!="" && ok) { print uri; exit } }' "$f"
      done; } >"$WORK/sec-mirrors.txt" 2>/dev/null || true
    local first=""
    read -r first <"$WORK/sec-mirrors.txt" || true
    echo "$first"
}

MIRROR=${DEBIAN_MIRROR:-$(host_mirror || true)}
[[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian
SEC_MIRROR=$(host_security_mirror || true)
[[ -n $SEC_MIRROR ]] || SEC_MIRROR=http://deb.debian.org/debian-security

# apt settings that matter inside the images too (proxy, snapshot date checks)
APT_CONF=$WORK/99-host-apt.conf
: >"$APT_CONF"
HTTP_PROXY_APT="" HTTPS_PROXY_APT=""
if command -v apt-config >/dev/null; then
    eval "$(apt-config shell HTTP_PROXY_APT Acquire::http::Proxy HTTPS_PROXY_APT Acquire::https::Proxy)"
    for key in Acquire::http::Proxy Acquire::https::Proxy Acquire::Check-Valid-Until Acquire::Check-Date; do
        val=$(apt-config dump "$key" 2>/dev/null | awk -v k="$key" 'tolower($1)==tolower(k) { $1=""; sub(/^ /,""); print; exit }')
        [[ -n $val ]] && echo "$key $val" >>"$APT_CONF"
    done
fi
PROXY_ENV=()
[[ -n $HTTP_PROXY_APT ]] && PROXY_ENV+=("http_proxy=$HTTP_PROXY_APT")
[[ -n $HTTPS_PROXY_APT ]] && PROXY_ENV+=("https_proxy=$HTTPS_PROXY_APT")
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n ${!v:-} ]] && PROXY_ENV+=("$v=${!v}")
done
BUILD_ARGS=()
for kv in "${PROXY_ENV[@]}"; do BUILD_ARGS+=(--build-arg "$kv"); done

# ---------------------------------------------------------------- host pip settings
# Carry the host's pip index configuration, minus anything that only exists on the
# host's disk (file:// indexes, find-links directories, constraint files).
make_pip_conf() {
    local out=$1
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/ca-certificates.crt"
        python3 - <<'PY' 2>/dev/null || true
import os, subprocess, sys
keys = {"index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout",
        "retries", "proxy", "disable-pip-version-check"}
vals = {}
try:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, timeout=60).stdout
except Exception:
    out = ""
for line in out.splitlines():
    if "=" not in line:
        continue
    k, v = line.split("=", 1)
    k = k.split(".", 1)[-1]
    vals[k] = v.strip().strip("'\"")
for k in list(keys):
    env = os.environ.get("PIP_" + k.upper().replace("-", "_"))
    if env:
        vals[k] = env
for k in sorted(keys):
    if k not in vals:
        continue
    toks = [t for t in vals[k].split() if not t.startswith(("file:", "/", "."))]
    if toks:
        if k == "timeout":
            k = "default-timeout"
        print(f"{k} = {' '.join(toks)}")
PY
    } | awk '!seen[$1]++' >"$out"
}

# ---------------------------------------------------------------- rootfs per suite
# debootstrap SUITE with PACKAGES into a tarball, with the tweaks of the official Debian images.
build_rootfs() {  # NAME SUITE PACKAGES TARBALL
    local name=$1 suite=$2 packages=$3 tarball=$4
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap, or run docker/engine.sh start DIR)"
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
    mkdir -p "$CACHE"
    local root=$WORK/rootfs-$name t0=$SECONDS
    log "debootstrap --variant=minbase --include=$packages $suite from $MIRROR (about a minute)"
    env "${PROXY_ENV[@]}" debootstrap --variant=minbase --include="$packages" \
        --arch="$ARCH" "$suite" "$root" "$MIRROR" >"$WORK/debootstrap-$name.log" 2>&1 || {
        tail -n 20 "$WORK/debootstrap-$name.log" >&2
        die "debootstrap of $suite failed (mirror $MIRROR)"
    }
    if [[ $suite == bookworm ]]; then
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
            "$MIRROR" "$MIRROR" "$SEC_MIRROR" >"$root/etc/apt/sources.list"
    else
        printf 'deb %s %s main\n' "$MIRROR" "$suite" >"$root/etc/apt/sources.list"
    fi
    cp "$APT_CONF" "$root/etc/apt/apt.conf.d/99-host-apt.conf"
    printf '#!/bin/sh\n# no services start during docker build\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
CFG
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    : >"$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    tar --numeric-owner -C "$root" -czf "$tarball.tmp" . || die "could not write $tarball"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    TIMINGS+=("debootstrap $name: $((SECONDS - t0))s")
    log "rootfs cached at $tarball ($(du -h "$tarball" | cut -f1))"
}

# The imported rootfs of stand-in NAME (built or taken from the cache): sets ROOTFS_TAG.
ensure_rootfs() {  # NAME
    local name=$1 suite=${SUITE[$1]} packages=${INCLUDE[$1]}
    local tarball=$CACHE/$suite-${packages//,/-}-$ARCH.tar.gz
    local tag=$PREFIX/rootfs:$suite-${packages//,/-}
    if [[ $REFRESH -eq 1 || ! -s $tarball ]]; then
        build_rootfs "$name" "$suite" "$packages" "$tarball"
    else
        log "using cached rootfs $tarball"
    fi
    if [[ $REFRESH -eq 1 ]] || ! image_exists "$tag"; then
        local t0=$SECONDS
        log "docker import -> $tag"
        docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' \
            -m "debootstrap --variant=minbase --include=$packages $suite $MIRROR" \
            "$tarball" "$tag" >/dev/null || die "docker import of $tarball failed"
        TIMINGS+=("import $name rootfs: $((SECONDS - t0))s")
    fi
    ROOTFS_TAG=$tag
}

# ---------------------------------------------------------------- stand-ins
build_stand_in() {  # NAME
    local name=$1 tag; tag=$(tag_of "$1")
    if [[ $FORCE -eq 0 ]] && image_exists "$tag"; then
        log "$tag exists (use --force to rebuild)"
        return
    fi
    ensure_rootfs "$name"
    local base=$ROOTFS_TAG
    local ctx=$WORK/context-$name t0=$SECONDS
    cp -r "$HERE/stand-ins/$name" "$ctx"
    if [[ $name == python ]]; then
        cp "$CA_BUNDLE" "$ctx/host-ca-bundle.crt"
        make_pip_conf "$ctx/pip.conf"
        log "pip.conf for the image: $(grep -v '^\[' "$ctx/pip.conf" | tr '\n' ';')"
    fi
    log "docker build -> $tag"
    docker build --network host --build-arg "BASE_IMAGE=$base" "${BUILD_ARGS[@]}" \
        -t "$tag" "$ctx" >"$WORK/build-$name.log" 2>&1 || {
        tail -n 30 "$WORK/build-$name.log" >&2
        die "building $tag failed"
    }
    TIMINGS+=("build $name: $((SECONDS - t0))s")
}

# ---------------------------------------------------------------- main
for name in "${WANT[@]}"; do
    build_stand_in "$name"
    if [[ $TAG_OFFICIAL -eq 1 ]]; then
        docker tag "$(tag_of "$name")" "${OFFICIAL[$name]}"
        log "tagged $(tag_of "$name") as ${OFFICIAL[$name]}"
    fi
done
for t in "${TIMINGS[@]}"; do log "timing: $t"; done
log "images:"
for name in "${WANT[@]}"; do echo "${VARIABLE[$name]}=$(tag_of "$name")"; done
