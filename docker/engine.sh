#!/usr/bin/env bash
# Start/stop a private Docker engine that lives entirely under DIR.
#
#   docker/engine.sh start DIR   install missing apt packages, start dockerd, wait until ready
#   docker/engine.sh stop DIR    stop that dockerd (and its containerd); no-op if not running
#   docker/engine.sh env DIR     print: export DOCKER_HOST=unix://DIR/docker.sock
#   docker/engine.sh status DIR  exit 0 if the engine answers, 1 otherwise
#
# Layout: DIR/data (images, containers), DIR/exec, DIR/docker.sock, DIR/pid, DIR/dockerd.log.
# Only the dockerd whose pid is in DIR/pid (and whose command line names DIR) is touched.
#
# Environment: ENGINE_START_TIMEOUT (default 60 s), ENGINE_STOP_TIMEOUT (default 30 s),
#              DOCKERD_EXTRA_ARGS (extra dockerd flags, word-split).
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
    cat <<EOF
usage: $PROG start|stop|env|status DIR
  start DIR   install docker.io/docker-compose/debootstrap if missing, start a private
              dockerd under DIR (log: DIR/dockerd.log), wait until 'docker info' answers
  stop DIR    stop the dockerd started by 'start DIR' and wait for it to exit
  env DIR     print 'export DOCKER_HOST=unix://DIR/docker.sock' (use: eval "\$($PROG env DIR)")
  status DIR  exit 0 if that engine answers, 1 otherwise
EOF
}

# command -> Debian package that provides it
declare -A PKG_FOR=(
    [dockerd]=docker.io
    [docker]=docker.io
    [containerd]=containerd
    [runc]=runc
    [docker-compose]=docker-compose
    [debootstrap]=debootstrap
)

install_missing() {
    local missing=() cmd
    for cmd in dockerd docker containerd runc docker-compose debootstrap; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_FOR[$cmd]}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    # de-duplicate
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install: ${missing[*]}"
    command -v apt-get >/dev/null || die "apt-get not found; install manually: ${missing[*]}"
    log "installing: ${missing[*]}"
    # Never let the package start the system-wide docker service.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 || rc=$?
    [[ $made_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed (exit $rc)"
}

# pid of the dockerd belonging to DIR, or nothing
engine_pid() {
    local pidf="$DIR/pid" pid
    [[ -s $pidf ]] || return 0
    pid=$(tr -dc '0-9' <"$pidf")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 0
    # Only claim it if it is a dockerd started for this DIR.
    local cmd; cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    if [[ $cmd == *dockerd*"--data-root $DIR/data "* ]]; then
        echo "$pid"
    fi
}

docker_ok() { DOCKER_HOST="unix://$DIR/docker.sock" timeout 10 docker info >/dev/null 2>&1; }

# pids whose command line mentions this engine's exec-root (its containerd and shims)
children_of_dir() {
    local p cmd
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null || true)
        if [[ $cmd == *containerd*"$DIR/exec/"* ]]; then echo "${p#/proc/}"; fi
    done
    return 0
}

# overlay2 where this kernel lets us mount an overlay under DIR (a layer, or a container,
# then costs only what changed); vfs, which copies every layer whole, elsewhere.
# ENGINE_STORAGE_DRIVER chooses. Each driver keeps its own images under DIR/data.
storage_driver() {
    if [[ -n ${ENGINE_STORAGE_DRIVER:-} ]]; then echo "$ENGINE_STORAGE_DRIVER"; return; fi
    local probe="$DIR/overlay-probe"
    rm -rf "$probe"; mkdir -p "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"; rm -rf "$probe"; echo overlay2
    else
        rm -rf "$probe"; echo vfs
    fi
}

cmd_start() {
    install_missing
    mkdir -p "$DIR/data" "$DIR/exec"
    local sock="$DIR/docker.sock"
    # unix socket paths are limited to 107 bytes (containerd's lives deeper, under exec/)
    (( ${#DIR} <= 60 )) || die "DIR path too long for unix sockets (${#DIR} > 60 chars): $DIR"
    local pid; pid=$(engine_pid)
    if [[ -n $pid ]]; then
        log "dockerd already running for $DIR (pid $pid)"
    else
        rm -f "$DIR/pid" "$sock"
        local driver; driver=$(storage_driver)
        log "starting dockerd, storage driver $driver (log: $DIR/dockerd.log)"
        # shellcheck disable=SC2086
        # Containers resolve names with a short timeout: a compose service that is stopped
        # (a RabbitMQ node killed by a fault test) is not found in a second or two, rather
        # than after this offline host's resolver times out (10 s per lookup).
        setsid nohup dockerd --iptables=false --ip6tables=false --storage-driver="$driver" \
            --dns-opt timeout:1 --dns-opt attempts:1 \
            --data-root "$DIR/data" --exec-root "$DIR/exec" \
            -H "unix://$sock" --pidfile "$DIR/pid" ${DOCKERD_EXTRA_ARGS:-} \
            >>"$DIR/dockerd.log" 2>&1 </dev/null &
        pid=$!
    fi
    local timeout=${ENGINE_START_TIMEOUT:-60} start=$SECONDS
    until docker_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$DIR/dockerd.log" >&2 || true
            die "dockerd exited during startup; see $DIR/dockerd.log"
        fi
        if (( SECONDS - start >= timeout )); then
            tail -n 30 "$DIR/dockerd.log" >&2 || true
            die "dockerd did not answer within ${timeout}s; see $DIR/dockerd.log (still running as pid $pid; '$PROG stop $DIR' to stop it)"
        fi
        sleep 1
    done
    log "engine ready after $((SECONDS - start))s (pid $pid)"
    echo "export DOCKER_HOST=unix://$sock"
}

cmd_stop() {
    local pid; pid=$(engine_pid)
    local timeout=${ENGINE_STOP_TIMEOUT:-30} start=$SECONDS
    if [[ -z $pid ]]; then
        log "no dockerd running for $DIR"
    else
        log "stopping dockerd pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do
            if (( SECONDS - start >= timeout )); then
                log "dockerd did not exit within ${timeout}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 1
                break
            fi
            sleep 0.5
        done
    fi
    # dockerd normally stops the containerd it launched; clean up leftovers of THIS engine only.
    local left p
    left=$(children_of_dir)
    if [[ -n $left ]]; then
        log "stopping leftover processes of this engine: ${left//$'\n'/ }"
        for p in $left; do kill -TERM "$p" 2>/dev/null || true; done
        sleep 2
        for p in $left; do
            if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
        done
    fi
    # dockerd leaves mounts behind (e.g. the nsfs bind mount DIR/exec/netns/default), which
    # make 'rm -rf DIR' fail with "Device or resource busy": unmount everything under DIR.
    local mnts m
    mnts=$(awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    for m in $mnts; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
    rm -f "$DIR/pid" "$DIR/docker.sock"
    log "stopped"
}

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
case $1 in -h|--help|help) usage; exit 0 ;; esac
[[ $# -eq 2 ]] || { usage >&2; exit 2; }
SUB=$1
DIR=$(realpath -m -- "$2")
[[ $DIR != *[[:space:]]* ]] || die "DIR must not contain whitespace: $DIR"
[[ $DIR != / ]] || die "DIR must not be /"

case $SUB in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) echo "export DOCKER_HOST=unix://$DIR/docker.sock" ;;
    status) docker_ok ;;
    *) usage >&2; die "unknown subcommand: $SUB" ;;
esac
