#!/usr/bin/env bash
# Build offline stand-ins for the public images python:3.11-slim and
# rabbitmq:3.13-management from Debian bookworm packages (no image registry needed).
#
#   eval "$(docker/engine.sh start /tmp/ct-docker)"     # or any engine in DOCKER_HOST
#   docker/build-stand-ins.sh [--force] [--refresh-rootfs] [--also-tag-official] [python|rabbitmq ...]
#
# Steps: debootstrap --variant=minbase bookworm (cached as a tarball) -> docker import
# -> docker build --network host for each stand-in.  Prints the tags and
# PYTHON_IMAGE=... / RABBITMQ_IMAGE=... lines at the end (stdout; progress goes to stderr).
#
# Environment:
#   CELERY_TASKS_DOCKER_CACHE  rootfs tarball cache dir (default /var/tmp/celery-tasks-docker-cache)
#   DEBIAN_MIRROR              override the mirror (default: the host apt's bookworm mirror)
#   HOST_CA_BUNDLE             CA bundle copied into the images (default /etc/ssl/certs/ca-certificates.crt)
#   TAG_PREFIX                 image name prefix (default celery-tasks)
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
    cat <<EOF
usage: $PROG [--force] [--refresh-rootfs] [--also-tag-official] [python|rabbitmq ...]
  Builds into the engine named by DOCKER_HOST (see docker/engine.sh env DIR):
    ${TAG_PREFIX:-celery-tasks}/debian:bookworm-minbase   (docker import of a debootstrap rootfs)
    ${TAG_PREFIX:-celery-tasks}/python:3.11-slim          (python3 venv at /usr/local, host CA, pip config)
    ${TAG_PREFIX:-celery-tasks}/rabbitmq:3.13-management  (Debian rabbitmq-server + management plugin)
  --force              rebuild the stand-ins even if the tags exist (reuses rootfs + base image)
  --refresh-rootfs     re-run debootstrap and re-import the base image (implies --force)
  --also-tag-official  also tag the results python:3.11-slim and rabbitmq:3.13-management
  Cache dir: \${CELERY_TASKS_DOCKER_CACHE:-/var/tmp/celery-tasks-docker-cache}
EOF
}

FORCE=0 REFRESH=0 OFFICIAL=0 WANT=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --force) FORCE=1 ;;
        --refresh-rootfs) REFRESH=1 FORCE=1 ;;
        --also-tag-official) OFFICIAL=1 ;;
        python|rabbitmq) WANT+=("$1") ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[[ ${#WANT[@]} -gt 0 ]] || WANT=(python rabbitmq)

PREFIX=${TAG_PREFIX:-celery-tasks}
BASE_TAG=$PREFIX/debian:bookworm-minbase
PY_TAG=$PREFIX/python:3.11-slim
RMQ_TAG=$PREFIX/rabbitmq:3.13-management
CACHE=${CELERY_TASKS_DOCKER_CACHE:-/var/tmp/celery-tasks-docker-cache}
CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ROOTFS_TAR=$CACHE/bookworm-minbase-$ARCH.tar.gz
TIMINGS=()

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
    if [[ -d $WORK/rootfs ]]; then
        local m
        for m in proc sys dev/pts dev; do umount -l "$WORK/rootfs/$m" 2>/dev/null || true; done
    fi
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

# ---------------------------------------------------------------- rootfs + base image
build_rootfs() {
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap, or run docker/engine.sh start DIR)"
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
    mkdir -p "$CACHE"
    local root=$WORK/rootfs t0=$SECONDS
    log "debootstrap --variant=minbase bookworm from $MIRROR (takes a minute or two)"
    env "${PROXY_ENV[@]}" debootstrap --variant=minbase --include=ca-certificates \
        --arch="$ARCH" bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 20 "$WORK/debootstrap.log" >&2
        die "debootstrap failed (mirror $MIRROR)"
    }
    # container-friendly tweaks, like the official debian images
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SEC_MIRROR bookworm-security main
EOF
    cp "$APT_CONF" "$root/etc/apt/apt.conf.d/99-host-apt.conf"
    printf '#!/bin/sh\n# no services start during docker build\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    : >"$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    tar --numeric-owner -C "$root" -czf "$ROOTFS_TAR.tmp" . || die "could not write $ROOTFS_TAR"
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$root"
    TIMINGS+=("debootstrap+tar: $((SECONDS - t0))s")
    log "rootfs cached at $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

ensure_base() {
    if [[ $REFRESH -eq 1 || ! -s $ROOTFS_TAR ]]; then
        build_rootfs
    else
        log "using cached rootfs $ROOTFS_TAR"
    fi
    if [[ $REFRESH -eq 0 ]] && image_exists "$BASE_TAG"; then
        log "base image $BASE_TAG exists"
        return
    fi
    local t0=$SECONDS
    log "docker import -> $BASE_TAG"
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["bash"]' \
        -m "debootstrap --variant=minbase bookworm $MIRROR" \
        "$ROOTFS_TAR" "$BASE_TAG" >/dev/null || die "docker import of $ROOTFS_TAR failed"
    TIMINGS+=("import base: $((SECONDS - t0))s")
}

# ---------------------------------------------------------------- python stand-in
build_python() {
    if [[ $FORCE -eq 0 ]] && image_exists "$PY_TAG"; then
        log "$PY_TAG exists (use --force to rebuild)"
        return
    fi
    local ctx=$WORK/python t0=$SECONDS
    mkdir -p "$ctx"
    cp "$CA_BUNDLE" "$ctx/host-ca-bundle.crt"
    make_pip_conf "$ctx/pip.conf"
    log "pip.conf for the image: $(grep -v '^\[' "$ctx/pip.conf" | tr '\n' ';')"
    cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# Host CA bundle (includes the TLS-interception CA) -> merged into the system bundle.
COPY host-ca-bundle.crt /usr/local/share/ca-certificates/celery-tasks-host-ca-bundle.crt
COPY pip.conf /etc/pip.conf
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
# Like the official image: python/python3/pip/pip3 in /usr/local/bin and a writable,
# non-"externally managed" site-packages -> a venv rooted at /usr/local.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates; \
    update-ca-certificates; \
    python3 -m venv /usr/local; \
    /usr/local/bin/python -m pip --version; \
    test "$(command -v python)" = /usr/local/bin/python; \
    test "$(command -v pip)" = /usr/local/bin/pip; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /root/.cache
CMD ["python3"]
EOF
    log "docker build -> $PY_TAG"
    docker build --network host --build-arg "BASE_IMAGE=$BASE_TAG" "${BUILD_ARGS[@]}" \
        -t "$PY_TAG" "$ctx" >"$WORK/python-build.log" 2>&1 || {
        tail -n 30 "$WORK/python-build.log" >&2
        die "building $PY_TAG failed"
    }
    TIMINGS+=("build python: $((SECONDS - t0))s")
}

# ---------------------------------------------------------------- rabbitmq stand-in
build_rabbitmq() {
    if [[ $FORCE -eq 0 ]] && image_exists "$RMQ_TAG"; then
        log "$RMQ_TAG exists (use --force to rebuild)"
        return
    fi
    local ctx=$WORK/rabbitmq t0=$SECONDS
    mkdir -p "$ctx"
    cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Stand-in for the official rabbitmq image's entrypoint: RABBITMQ_DEFAULT_USER/PASS/VHOST
# become /etc/rabbitmq/rabbitmq.conf, then rabbitmq-server runs in the foreground as user rabbitmq.
set -euo pipefail
if [[ ${1:-} == rabbitmq-server ]]; then
    conf=/etc/rabbitmq/rabbitmq.conf
    marker="# generated by the celery-tasks stand-in entrypoint"
    if [[ ! -s $conf ]] || [[ $(head -n1 "$conf") == "$marker" ]]; then
        {
            echo "$marker"
            echo "loopback_users = none"
            echo "listeners.tcp.1 = 0.0.0.0:5672"
            echo "management.tcp.ip = 0.0.0.0"
            echo "management.tcp.port = 15672"
            echo "log.console = true"
            echo "log.console.level = info"
            echo "log.file = false"
            [[ -n ${RABBITMQ_DEFAULT_USER:-} ]] && echo "default_user = $RABBITMQ_DEFAULT_USER"
            [[ -n ${RABBITMQ_DEFAULT_PASS:-} ]] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
            [[ -n ${RABBITMQ_DEFAULT_VHOST:-} ]] && echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"
            true
        } >"$conf.tmp"
        mv "$conf.tmp" "$conf"
    else
        echo "docker-entrypoint: keeping existing $conf" >&2
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq /etc/rabbitmq 2>/dev/null || true
        exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
    fi
fi
exec "$@"
EOF
    cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# /usr/lib/rabbitmq/bin first: the real scripts, not Debian's /usr/sbin wrappers (those
# redirect rabbitmq-server's output to /var/log/rabbitmq/startup_log and do not exec,
# so the server would log nothing and ignore SIGTERM).
ENV HOME=/var/lib/rabbitmq LANG=C.UTF-8 \
    PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends rabbitmq-server; \
    rabbitmq-plugins enable --offline rabbitmq_management; \
    mkdir -p /var/lib/rabbitmq /var/log/rabbitmq; \
    chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq; \
    test "$(command -v rabbitmq-server)" = /usr/lib/rabbitmq/bin/rabbitmq-server; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
WORKDIR /var/lib/rabbitmq
VOLUME /var/lib/rabbitmq
EXPOSE 4369 5671 5672 15671 15672 15691 15692 25672
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["rabbitmq-server"]
EOF
    log "docker build -> $RMQ_TAG"
    docker build --network host --build-arg "BASE_IMAGE=$BASE_TAG" "${BUILD_ARGS[@]}" \
        -t "$RMQ_TAG" "$ctx" >"$WORK/rabbitmq-build.log" 2>&1 || {
        tail -n 30 "$WORK/rabbitmq-build.log" >&2
        die "building $RMQ_TAG failed"
    }
    TIMINGS+=("build rabbitmq: $((SECONDS - t0))s")
}

# ---------------------------------------------------------------- main
need_base=0
for w in "${WANT[@]}"; do
    case $w in
        python) { [[ $FORCE -eq 1 ]] || ! image_exists "$PY_TAG"; } && need_base=1 ;;
        rabbitmq) { [[ $FORCE -eq 1 ]] || ! image_exists "$RMQ_TAG"; } && need_base=1 ;;
    esac
done
[[ $need_base -eq 1 ]] && ensure_base
for w in "${WANT[@]}"; do "build_$w"; done

if [[ $OFFICIAL -eq 1 ]]; then
    for w in "${WANT[@]}"; do
        case $w in
            python) docker tag "$PY_TAG" python:3.11-slim && log "tagged $PY_TAG as python:3.11-slim" ;;
            rabbitmq) docker tag "$RMQ_TAG" rabbitmq:3.13-management && log "tagged $RMQ_TAG as rabbitmq:3.13-management" ;;
        esac
    done
fi
for t in "${TIMINGS[@]}"; do log "timing: $t"; done
log "images:"
for w in "${WANT[@]}"; do
    case $w in
        python) echo "PYTHON_IMAGE=$PY_TAG" ;;
        rabbitmq) echo "RABBITMQ_IMAGE=$RMQ_TAG" ;;
    esac
done
