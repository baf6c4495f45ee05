#!/usr/bin/env bash
# Today's engines for the end-to-end tests: Docker Engine 26 and Podman 5 from Debian 13 (trixie), run from a trixie
# root in a private mount namespace next to this machine's own Debian 12 engines (Docker 20.10, Podman 4.3).
#
#   scripts/trixie-env.sh root          build the trixie root once (cached, see below); print its path
#   scripts/trixie-env.sh up   DIR      start it all; write DIR/env (KEY=VALUE lines, literal values, mode 0600)
#   scripts/trixie-env.sh down DIR      stop and remove everything `up` made (idempotent; `up` runs it first)
#
# What `up` makes:
# - a network namespace of its own (loopback, plus a veth eth0 with SWARM_ADDR for `docker swarm init`), so that
#   Swarm's bridges and the engines' traffic never touch the host's network;
# - there, an sshd on 127.0.0.1 with the test users and keys: scripts/e2e-env.sh up DIR/host with E2E_NO_DOCKERD=1;
# - a "holder" process in a private mount namespace whose root is the trixie tree (read-only binds of its usr, etc
#   and var) through pivot_root; not chroot: under a chroot `docker exec` lands in the host's root filesystem. Leaving
#   the old root (umount -l) also drops the copies of other runs' FUSE, overlay and netns mounts the namespace
#   inherited, which would otherwise keep those runs' sshfs alive. /proc, /sys and /dev are the host's; /run, /tmp
#   and /root are private tmpfs, and /run/docker/plugins is DIR/plugin-sockets (not the machine's, which every other
#   dockerd sees). The repository is bound read-only and DIR read-write, both at their own paths;
# - inside it, the suite's dockerd (26 on trixie) with its own data root, exec root, socket (DIR/docker.sock), no
#   bridge, no iptables, and its containers under its own cgroup parent; the tests' busybox image imported.
# DIR/bin/in-ns runs a command inside (nsenter into the holder's mount and network namespaces): the trixie docker and
# podman CLIs, the plugin's node in host mode. `down` stops every process of that mount namespace by pid (dockerd
# first, gracefully), then the holder (its mounts go with it), the sshd, the network namespace and the cgroups.
#
# The root is made once with debootstrap --variant=minbase and apt-get (from the Debian mirror this machine's apt
# uses) and cached in TRIXIE_CACHE (default /var/cache/sshfs-e2e) as trixie-<key>/, the key a hash of the suite and the
# package list; it is built under a temporary name and renamed when complete, so a partial build is never taken for a
# complete one. Must run as root. Optional: TRIXIE_MIRROR, TRIXIE_DOCKERD_WAIT (seconds, default 90), TRIXIE_SUITE
# (default trixie; forky gives Docker 28.5, whose Swarm calls CSI plugins: test/trixie/csi.trixie.test.ts uses it;
# a debootstrap without a script for the suite bootstraps it with sid's).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# TRIXIE_SUITE=forky: Debian testing's root instead (Docker 28.5: the first engine here whose Swarm calls CSI plugins).
SUITE=${TRIXIE_SUITE:-trixie}
[[ $SUITE =~ ^[a-z]+$ ]] || { echo "[trixie-env] ERROR: TRIXIE_SUITE must be a Debian suite name" >&2; exit 2; }
PACKAGES=(docker.io docker-cli containerd runc tini iptables fuse3 sshfs openssh-client podman crun conmon netavark
  nodejs busybox-static iproute2 ca-certificates)
CACHE=${TRIXIE_CACHE:-/var/cache/sshfs-e2e}
SWARM_ADDR=10.99.21.1
IMAGE=e2e-busybox:latest

log() { printf '[trixie-env] %s\n' "$*" >&2; }
die() { printf '[trixie-env] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: $0 root | up DIR | down DIR" >&2; exit 2; }

# shellcheck source=lib/procs.sh
. "$REPO/scripts/lib/procs.sh"
# shellcheck source=lib/test-env.sh
. "$REPO/scripts/lib/test-env.sh"

# ---------------------------------------------------------------------------------------------------------------
# the cached root

cache_key() { printf '%s\n' "$SUITE" minbase "${PACKAGES[@]}" | sha256sum | cut -c1-12; }
root_dir() { echo "$CACHE/$SUITE-$(cache_key)"; }

# The Debian mirror this machine's apt uses (the first non-security URI), else Debian's own.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }')
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $2 ~ /^https?:/ && $3 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_root() {
  local final=$1 mirror partial start=$SECONDS
  [[ $(id -u) -eq 0 ]] || die "building the trixie root needs root (debootstrap)"
  command -v debootstrap >/dev/null 2>&1 || bash "$REPO/scripts/install-system-deps.sh" debootstrap
  # An older debootstrap has no script for a newer suite: testing and unstable bootstrap alike (sid's script).
  local script=/usr/share/debootstrap/scripts/$SUITE
  [[ -e $script ]] || script=/usr/share/debootstrap/scripts/sid
  [[ -e $script ]] || die "this debootstrap knows neither $SUITE nor sid (upgrade debootstrap)"
  mirror=${TRIXIE_MIRROR:-$(debian_mirror)}
  mkdir -p "$CACHE"
  # Partial builds of runs that died: their builder pid is gone.
  local old
  for old in "$CACHE/$SUITE".partial.*; do
    [[ -d $old ]] || continue
    kill -0 "$(cat "$old.pid" 2>/dev/null || echo x)" 2>/dev/null && continue
    log "removing the partial build $old"
    MOUNT_TYPE='' unmount_under "$old"
    rm -rf --one-file-system -- "$old" "$old.pid" "$old.log"
  done
  partial=$(mktemp -d "$CACHE/$SUITE.partial.XXXXXX")
  echo $$ >"$partial.pid"
  trap 'umount "$partial/proc" 2>/dev/null || true; rm -rf --one-file-system -- "$partial" "$partial.pid"' EXIT
  log "debootstrap --variant=minbase $SUITE from $mirror (once; cached as $final)"
  debootstrap --variant=minbase "$SUITE" "$partial" "$mirror" "$script" >"$partial.log" 2>&1 ||
    { tail -n 20 "$partial.log" >&2; die "debootstrap failed"; }
  # No service starts while packages are installed (there is no init in the root anyway).
  printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
  chmod 0755 "$partial/usr/sbin/policy-rc.d"
  mount -t proc proc "$partial/proc"
  log "installing ${PACKAGES[*]}"
  # Check-Valid-Until off: a testing suite's Release file on a mirror snapshot may be past its short Valid-Until date
  # (signatures are still checked).
  chroot "$partial" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get -o Acquire::Check-Valid-Until=false update -qq &&
    apt-get install -y -qq --no-install-recommends "$@" && apt-get clean' sh "${PACKAGES[@]}" >>"$partial.log" 2>&1 ||
    { tail -n 20 "$partial.log" >&2; die "apt-get install in the $SUITE root failed"; }
  umount "$partial/proc"
  chroot "$partial" dockerd --version >/dev/null || die "dockerd does not run in the $SUITE root"
  rm -rf "$partial"/var/lib/apt/lists/* "$partial"/usr/share/doc/* "$partial"/usr/share/man/*
  mv "$partial.log" "$partial/build.log"
  # The rename is the commit: a root under its final name is complete.
  if ! mv -T "$partial" "$final" 2>/dev/null; then
    [[ -d $final ]] || die "cannot move the built root to $final"
    log "another run finished the same root first; using it"
    rm -rf --one-file-system -- "$partial"
  fi
  rm -f "$partial.pid"
  trap - EXIT
  log "built $final ($(du -sm "$final" | cut -f1) MiB) in $((SECONDS - start))s"
}

ensure_root() {
  local final
  final=$(root_dir)
  [[ -x $final/usr/sbin/dockerd ]] || build_root "$final"
  echo "$final"
}

# ---------------------------------------------------------------------------------------------------------------
# the environment

[[ ${1:-} == root ]] && { ensure_root; exit 0; }
[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$(realpath -m -- "$2")
[[ $DIR != / && -n $DIR ]] || die "refusing to use DIR=$DIR"
ENV_ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
NETNS=sshfs-tx-$ENV_ID
CGROUP_PARENT=sshfs-trixie-$ENV_ID
HOLDER_TAG="sshfs-trixie-holder $DIR"

holder_pid() {
  local pid
  pid=$(cat "$DIR/holder.pid" 2>/dev/null || true)
  pid_matches "$pid" "$HOLDER_TAG" && echo "$pid"
  return 0
}

# True when PID lives in the mount namespace NS (as readlink /proc/PID/ns/mnt shows it).
in_mount_ns() { [[ $(readlink "/proc/$1/ns/mnt" 2>/dev/null) == "$2" ]]; }

# Runs inside the new mount namespace (a copy of the host's, all private): builds the root on a tmpfs, pivots into it,
# leaves the old root, then holds the namespace. Arguments: TREE DIR REPO TAG.
# shellcheck disable=SC2016 # expanded by the holder's shell
HOLDER_SCRIPT='
set -eu
tree=$1 dir=$2 repo=$3 tag=$4 r=$2/newroot
mount -t tmpfs -o mode=0755 sshfs-trixie-root "$r"
for d in usr etc var; do
  mkdir "$r/$d"; mount --bind "$tree/$d" "$r/$d"; mount -o remount,bind,ro "$r/$d"
done
for l in bin sbin lib lib64; do [ -L "$tree/$l" ] && ln -s "$(readlink "$tree/$l")" "$r/$l"; done
mkdir -m 0755 "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/home" "$r/mnt" "$r/opt" "$r/srv" "$r/.old"
mkdir -m 0700 "$r/root"
mkdir -m 1777 "$r/tmp"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=0755 sshfs-trixie-run "$r/run"
mount -t tmpfs -o mode=1777 sshfs-trixie-vartmp "$r/var/tmp"
mkdir -p "$r/run/docker/plugins" "$r/run/lock"
mount --bind "$dir/plugin-sockets" "$r/run/docker/plugins"
mkdir -p "$r$repo"
mount --bind "$repo" "$r$repo"
mount -o remount,bind,ro "$r$repo"
[ -d "$r$dir" ] || mkdir -p "$r$dir"
mount --bind "$dir" "$r$dir"
cd "$r"
pivot_root . .old
cd /
umount -l /.old
rmdir /.old
: >"$dir/holder.ready"
exec -a "$tag" sleep infinity
'

in_ns() {
  local pid
  pid=$(holder_pid)
  [[ -n $pid ]] || die "the namespace holder is not running: run up first"
  nsenter -t "$pid" -m -n -r -w -- "$@"
}

start_holder() {
  local tree=$1 i
  install -d -m 0755 "$DIR/newroot" "$DIR/plugin-sockets"
  rm -f "$DIR/holder.ready"
  nsenter --net="/run/netns/$NETNS" unshare --mount --propagation private setsid bash -c "$HOLDER_SCRIPT" holder \
    "$tree" "$DIR" "$REPO" "$HOLDER_TAG" >"$DIR/holder.log" 2>&1 </dev/null &
  echo $! >"$DIR/holder.pid"
  for ((i = 0; i < 200; i++)); do
    [[ -e $DIR/holder.ready ]] && break
    kill -0 "$(cat "$DIR/holder.pid")" 2>/dev/null || { cat "$DIR/holder.log" >&2; die "the namespace holder exited"; }
    sleep 0.1
  done
  [[ -e $DIR/holder.ready ]] || { cat "$DIR/holder.log" >&2; die "the namespace holder did not get ready in 20 s"; }
  [[ -n $(holder_pid) ]] || die "the namespace holder does not run as expected"
  readlink "/proc/$(holder_pid)/ns/mnt" >"$DIR/mntns"
  # Nothing of other runs may stay mounted in here (their sshfs would live on through it).
  if grep -E ' - (fuse\.sshfs|overlay|nsfs) ' "/proc/$(holder_pid)/mountinfo" | grep -v " $DIR/" >&2; then
    die "mounts of other runs are still in the namespace"
  fi
}

start_dockerd() {
  local args=(
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false
    --config-file "$DIR/daemon.json" --data-root "$DIR/docker-data" --exec-root /run/docker-$SUITE
    --pidfile "$DIR/dockerd.pid" --cgroup-parent "/$CGROUP_PARENT" -H "unix://$DIR/docker.sock"
  )
  echo '{}' >"$DIR/daemon.json"
  log "starting dockerd $(in_ns dockerd --version | sed 's/^Docker version //') in the $SUITE namespace"
  in_ns setsid dockerd "${args[@]}" >>"$DIR/dockerd.log" 2>&1 </dev/null &
  wait_dockerd "$DIR/docker.sock" $! "${TRIXIE_DOCKERD_WAIT:-90}" "$DIR/dockerd.log" "dockerd (trixie)"
}

write_env() {
  local host_env=$DIR/host/env
  (
    umask 077
    grep -v -E '^(DOCKER_HOST|EXEC_ROOT|E2E_DIR)=' "$host_env"
    cat <<EOF
DOCKER_HOST=unix://$DIR/docker.sock
EXEC_ROOT=/run/docker-$SUITE
E2E_DIR=$DIR
TRIXIE_HOLDER_PID=$(holder_pid)
TRIXIE_IN_NS=$DIR/bin/in-ns
TRIXIE_SOCKET_DIR=$DIR/plugin-sockets
TRIXIE_NETNS=$NETNS
TRIXIE_SWARM_ADDR=$SWARM_ADDR
TRIXIE_DOCKER_VERSION=$(DOCKER_HOST="unix://$DIR/docker.sock" docker version --format '{{.Server.Version}}')
TRIXIE_PODMAN_VERSION=$(in_ns podman --version | awk '{ print $3 }')
EOF
  ) >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

do_up() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  bash "$REPO/scripts/install-system-deps.sh" debootstrap openssh-server openssh-client busybox-static iproute2 util-linux
  local tree
  tree=$(ensure_root)
  do_down
  install -d -m 0755 "$DIR"
  rm -rf --one-file-system -- "$DIR/docker-data" "$DIR/plugins" "$DIR/env" "$DIR/bin"

  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  # Swarm wants an address that is not loopback: a veth pair with both ends in here (no dummy module on every kernel).
  ip -n "$NETNS" link add eth0 type veth peer name eth1
  ip -n "$NETNS" addr add "$SWARM_ADDR/24" dev eth0
  ip -n "$NETNS" link set eth1 up
  ip -n "$NETNS" link set eth0 up

  log "starting the test sshd in $NETNS"
  E2E_NO_DOCKERD=1 nsenter --net="/run/netns/$NETNS" bash "$REPO/scripts/e2e-env.sh" up "$DIR/host"

  start_holder "$tree"
  install -d -m 0755 "$DIR/bin"
  printf '#!/bin/sh\n# Runs a command in the %s test namespace (its root, mounts and network).\nexec nsenter -t %s -m -n -r -w -- "$@"\n' \
    "$SUITE" "$(holder_pid)" >"$DIR/bin/in-ns"
  chmod 0755 "$DIR/bin/in-ns"
  start_dockerd
  busybox_tar "$DIR/rootfs" | DOCKER_HOST="unix://$DIR/docker.sock" docker import -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
  DOCKER_HOST="unix://$DIR/docker.sock" docker run --rm --network none "$IMAGE" true ||
    die "cannot run a container on the $SUITE dockerd (log: $DIR/dockerd.log)"
  write_env
  log "up: dockerd $(sed -n 's/^TRIXIE_DOCKER_VERSION=//p' "$DIR/env"), podman $(sed -n 's/^TRIXIE_PODMAN_VERSION=//p' "$DIR/env"); environment written to $DIR/env"
}

do_down() {
  [[ -d $DIR ]] || { log "nothing to do: $DIR does not exist"; return 0; }
  local pid mntns round
  mntns=$(cat "$DIR/mntns" 2>/dev/null || true)
  # dockerd first: on a graceful stop it stops its containers and sends the plugins their Unmounts.
  pid=$(cat "$DIR/dockerd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$DIR/docker.sock"; then
    log "stopping dockerd (pid $pid)"
    stop_pid "$pid" 40
  fi
  rm -f "$DIR/dockerd.pid"
  # Then every other process of the namespace (containerd, shims, plugins, sshfs, podman's conmon), the holder last:
  # with the last of them the namespace and every mount in it are gone.
  if [[ $mntns == mnt:* ]]; then
    for round in 1 2; do
      for pid in $(pids_where in_mount_ns "$mntns"); do
        pid_matches "$pid" "$HOLDER_TAG" && continue
        log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid) of the $SUITE namespace (round $round)"
        stop_pid "$pid" 10
      done
    done
  fi
  pid=$(holder_pid)
  if [[ -n $pid ]]; then log "stopping the namespace holder (pid $pid)"; stop_pid "$pid" 10; fi
  rm -f "$DIR/holder.pid" "$DIR/holder.ready" "$DIR/mntns"
  # The sshd and what e2e-env.sh made for it.
  bash "$REPO/scripts/e2e-env.sh" down "$DIR/host"
  if ip netns list 2>/dev/null | awk '{ print $1 }' | grep -qx "$NETNS"; then
    for pid in $(ip netns pids "$NETNS" 2>/dev/null); do
      log "stopping leftover process $pid in $NETNS ($(cat "/proc/$pid/comm" 2>/dev/null))"
      stop_pid "$pid" 5
    done
    log "deleting network namespace $NETNS"
    ip netns del "$NETNS" || log "WARNING: could not delete $NETNS"
  fi
  local cg
  for cg in /sys/fs/cgroup/*/"$CGROUP_PARENT"; do
    [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d $cg ]] && log "WARNING: could not remove cgroup $cg"
  done
  if [[ -n $(mounts_under "$DIR") ]]; then log "ERROR: mounts remain:"; mounts_under "$DIR" >&2; return 1; fi
  # Logs stay for a look after a failed run; data, sockets and the plugins' directories go.
  rm -rf --one-file-system -- "$DIR/docker-data" "$DIR/plugins" "$DIR"/podman-* "$DIR/managed" "$DIR/rootfs" \
    "$DIR/plugin-sockets" "$DIR/newroot" "$DIR/bin" "$DIR/env" "$DIR/docker.sock"
  log "down: nothing left running, mounted or namespaced for $DIR"
}

case $CMD in
up) do_up ;;
down) do_down ;;
*) usage ;;
esac
