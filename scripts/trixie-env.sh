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
# a debootstrap without a script for the suite bootstraps it with sid's), TRIXIE_NODES (1..4, default 1: see below).
#
# TRIXIE_NODES=N > 1 adds nodes 2..N for a multi-node swarm: each its own network namespace (NETNS-nK, a veth eth0 with
# 10.99.21.K to a bridge br0 in node 1's namespace, which then holds SWARM_ADDR instead of the veth pair), its own
# holder (mount and UTS namespace, host name forky-nK or trixie-nK, the same root), its own dockerd (DIR/nodeK/: data
# root, socket, log, plugin sockets; its own cgroup parent) and DIR/bin/in-ns-nK. The sshd listens on SWARM_ADDR too,
# so every node reaches it. Nothing joins a swarm here: the tests do (their own `swarm init` / `join`).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# TRIXIE_SUITE=forky: Debian testing's root instead (Docker 28.5: the first engine here whose Swarm calls CSI plugins).
SUITE=${TRIXIE_SUITE:-trixie}
[[ $SUITE =~ ^[a-z]+$ ]] || { echo "[trixie-env] ERROR: TRIXIE_SUITE must be a Debian suite name" >&2; exit 2; }
PACKAGES=(docker.io docker-cli containerd runc tini iptables fuse3 sshfs openssh-client podman crun conmon netavark
  nodejs busybox-static iproute2 ca-certificates)
CACHE=${TRIXIE_CACHE:-/var/cache/sshfs-e2e}
SWARM_ADDR=10.99.21.1
NODES=${TRIXIE_NODES:-1}
[[ $NODES =~ ^[1-4]$ ]] || { echo "[trixie-env] ERROR: TRIXIE_NODES must be 1..4" >&2; exit 2; }
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

# Node K's pieces (node 1 is the environment itself: DIR, NETNS; nodes 2.. of TRIXIE_NODES live in DIR/nodeK).
node_dir() { if [[ $1 == 1 ]]; then echo "$DIR"; else echo "$DIR/node$1"; fi; }
node_netns() { if [[ $1 == 1 ]]; then echo "$NETNS"; else echo "$NETNS-n$1"; fi; }
node_tag() { if [[ $1 == 1 ]]; then echo "$HOLDER_TAG"; else echo "sshfs-trixie-holder-n$1 $DIR"; fi; }
node_cgroup() { if [[ $1 == 1 ]]; then echo "$CGROUP_PARENT"; else echo "$CGROUP_PARENT-n$1"; fi; }
node_addr() { echo "${SWARM_ADDR%.*}.$1"; }
# The extra nodes that exist on disk (down works from what is there, whatever TRIXIE_NODES says now).
extra_nodes() {
  local d
  for d in "$DIR"/node[2-9]; do [[ -d $d ]] && echo "${d##*/node}"; done
  return 0
}

holder_pid() {
  local k=${1:-1} pid
  pid=$(cat "$(node_dir "$k")/holder.pid" 2>/dev/null || true)
  pid_matches "$pid" "$(node_tag "$k")" && echo "$pid"
  return 0
}

# True when PID lives in the mount namespace NS (as readlink /proc/PID/ns/mnt shows it).
in_mount_ns() { [[ $(readlink "/proc/$1/ns/mnt" 2>/dev/null) == "$2" ]]; }

# Runs inside the new mount namespace (a copy of the host's, all private): builds the root on a tmpfs, pivots into it,
# leaves the old root, then holds the namespace. Arguments: TREE DIR REPO TAG NODEDIR [HOSTNAME] (NODEDIR holds the
# node's newroot, plugin-sockets and holder.ready: DIR for node 1; a HOSTNAME only in a UTS namespace of its own).
# shellcheck disable=SC2016 # expanded by the holder's shell
HOLDER_SCRIPT='
set -eu
tree=$1 dir=$2 repo=$3 tag=$4 nd=$5 r=$5/newroot
[ -z "${6:-}" ] || hostname "$6"
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
mount --bind "$nd/plugin-sockets" "$r/run/docker/plugins"
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
: >"$nd/holder.ready"
exec -a "$tag" sleep infinity
'

# nsenter's namespaces of node K's holder: mount, network, root, cwd; and UTS for nodes 2.. (their own host name).
ns_flags() { if [[ $1 == 1 ]]; then echo "-m -n -r -w"; else echo "-m -n -u -r -w"; fi; }

in_node() {
  local k=$1 pid
  shift
  pid=$(holder_pid "$k")
  [[ -n $pid ]] || die "the namespace holder of node $k is not running: run up first"
  # shellcheck disable=SC2046 # the flags are words
  nsenter -t "$pid" $(ns_flags "$k") -- "$@"
}
in_ns() { in_node 1 "$@"; }

start_holder() {
  local tree=$1 k=${2:-1} nd i uts=() host=''
  nd=$(node_dir "$k")
  [[ $k == 1 ]] || { uts=(--uts); host=$SUITE-n$k; }
  install -d -m 0755 "$nd/newroot" "$nd/plugin-sockets"
  rm -f "$nd/holder.ready"
  nsenter --net="/run/netns/$(node_netns "$k")" unshare --mount ${uts[@]+"${uts[@]}"} --propagation private setsid bash -c \
    "$HOLDER_SCRIPT" holder "$tree" "$DIR" "$REPO" "$(node_tag "$k")" "$nd" "$host" >"$nd/holder.log" 2>&1 </dev/null &
  echo $! >"$nd/holder.pid"
  for ((i = 0; i < 200; i++)); do
    [[ -e $nd/holder.ready ]] && break
    kill -0 "$(cat "$nd/holder.pid")" 2>/dev/null || { cat "$nd/holder.log" >&2; die "the namespace holder of node $k exited"; }
    sleep 0.1
  done
  [[ -e $nd/holder.ready ]] || { cat "$nd/holder.log" >&2; die "the namespace holder of node $k did not get ready in 20 s"; }
  [[ -n $(holder_pid "$k") ]] || die "the namespace holder of node $k does not run as expected"
  readlink "/proc/$(holder_pid "$k")/ns/mnt" >"$nd/mntns"
  # Nothing of other runs may stay mounted in here (their sshfs would live on through it).
  if grep -E ' - (fuse\.sshfs|overlay|nsfs) ' "/proc/$(holder_pid "$k")/mountinfo" | grep -v " $DIR/" >&2; then
    die "mounts of other runs are still in the namespace of node $k"
  fi
}

start_dockerd() {
  local k=${1:-1} nd
  nd=$(node_dir "$k")
  local args=(
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false
    --config-file "$nd/daemon.json" --data-root "$nd/docker-data" --exec-root /run/docker-$SUITE
    --pidfile "$nd/dockerd.pid" --cgroup-parent "/$(node_cgroup "$k")" -H "unix://$nd/docker.sock"
  )
  echo '{}' >"$nd/daemon.json"
  log "starting dockerd $(in_node "$k" dockerd --version | sed 's/^Docker version //') of node $k in the $SUITE namespace"
  in_node "$k" setsid dockerd "${args[@]}" >>"$nd/dockerd.log" 2>&1 </dev/null &
  wait_dockerd "$nd/docker.sock" $! "${TRIXIE_DOCKERD_WAIT:-90}" "$nd/dockerd.log" "dockerd (trixie) of node $k"
}

# Nodes 2..NODES: a network namespace on node 1's bridge, a holder, a dockerd with the image, DIR/bin/in-ns-nK.
start_extra_nodes() {
  local tree=$1 k ns
  for ((k = 2; k <= NODES; k++)); do
    ns=$(node_netns "$k")
    install -d -m 0755 "$(node_dir "$k")"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$NETNS" link add "v$k" type veth peer name eth0 netns "$ns"
    ip -n "$NETNS" link set "v$k" master br0 up
    ip -n "$ns" addr add "$(node_addr "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
    start_holder "$tree" "$k"
    write_in_ns "$k"
    start_dockerd "$k"
    busybox_tar "$(node_dir "$k")/rootfs" |
      DOCKER_HOST="unix://$(node_dir "$k")/docker.sock" docker import -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
  done
}

# DIR/bin/in-ns (node 1) or DIR/bin/in-ns-nK: runs a command in that node's namespaces.
write_in_ns() {
  local k=$1 file=$DIR/bin/in-ns
  [[ $k == 1 ]] || file=$DIR/bin/in-ns-n$k
  printf '#!/bin/sh\n# Runs a command in the %s test namespace of node %s (its root, mounts and network).\nexec nsenter -t %s %s -- "$@"\n' \
    "$SUITE" "$k" "$(holder_pid "$k")" "$(ns_flags "$k")" >"$file"
  chmod 0755 "$file"
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
TRIXIE_NODES=$NODES
EOF
    local k
    for ((k = 2; k <= NODES; k++)); do
      cat <<EOF
TRIXIE_NODE${k}_DOCKER_HOST=unix://$(node_dir "$k")/docker.sock
TRIXIE_NODE${k}_IN_NS=$DIR/bin/in-ns-n$k
TRIXIE_NODE${k}_HOLDER_PID=$(holder_pid "$k")
TRIXIE_NODE${k}_SOCKET_DIR=$(node_dir "$k")/plugin-sockets
TRIXIE_NODE${k}_ADDR=$(node_addr "$k")
EOF
    done
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
  local sshd_extra=''
  if [[ $NODES == 1 ]]; then
    # Swarm wants an address that is not loopback: a veth pair with both ends in here (no dummy module on every kernel).
    ip -n "$NETNS" link add eth0 type veth peer name eth1
    ip -n "$NETNS" addr add "$SWARM_ADDR/24" dev eth0
    ip -n "$NETNS" link set eth1 up
    ip -n "$NETNS" link set eth0 up
  else
    # The other nodes' veths join this bridge; the sshd listens on its address too, so every node reaches it.
    ip -n "$NETNS" link add br0 type bridge
    ip -n "$NETNS" addr add "$SWARM_ADDR/24" dev br0
    ip -n "$NETNS" link set br0 up
    sshd_extra=$SWARM_ADDR
  fi

  log "starting the test sshd in $NETNS"
  E2E_NO_DOCKERD=1 E2E_SSHD_EXTRA_ADDR=$sshd_extra nsenter --net="/run/netns/$NETNS" \
    bash "$REPO/scripts/e2e-env.sh" up "$DIR/host"

  start_holder "$tree"
  install -d -m 0755 "$DIR/bin"
  write_in_ns 1
  start_dockerd
  busybox_tar "$DIR/rootfs" | DOCKER_HOST="unix://$DIR/docker.sock" docker import -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
  DOCKER_HOST="unix://$DIR/docker.sock" docker run --rm --network none "$IMAGE" true ||
    die "cannot run a container on the $SUITE dockerd (log: $DIR/dockerd.log)"
  start_extra_nodes "$tree"
  write_env
  log "up: dockerd $(sed -n 's/^TRIXIE_DOCKER_VERSION=//p' "$DIR/env"), podman $(sed -n 's/^TRIXIE_PODMAN_VERSION=//p' "$DIR/env"); environment written to $DIR/env"
}

# Stops node K: its dockerd (gracefully: it stops its containers and sends the plugins their Unmounts), then every
# other process of its mount namespace (containerd, shims, plugins, sshfs, podman's conmon), its holder last: with the
# last of them the namespace and every mount in it are gone.
stop_node() {
  local k=$1 nd pid mntns round
  nd=$(node_dir "$k")
  mntns=$(cat "$nd/mntns" 2>/dev/null || true)
  pid=$(cat "$nd/dockerd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$nd/docker.sock"; then
    log "stopping dockerd of node $k (pid $pid)"
    stop_pid "$pid" 40
  fi
  rm -f "$nd/dockerd.pid"
  if [[ $mntns == mnt:* ]]; then
    for round in 1 2; do
      for pid in $(pids_where in_mount_ns "$mntns"); do
        pid_matches "$pid" "$(node_tag "$k")" && continue
        log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid) of the $SUITE namespace of node $k (round $round)"
        stop_pid "$pid" 10
      done
    done
  fi
  pid=$(holder_pid "$k")
  if [[ -n $pid ]]; then log "stopping the namespace holder of node $k (pid $pid)"; stop_pid "$pid" 10; fi
  rm -f "$nd/holder.pid" "$nd/holder.ready" "$nd/mntns"
}

do_down() {
  [[ -d $DIR ]] || { log "nothing to do: $DIR does not exist"; return 0; }
  local k ns
  # The extra nodes first (they may be swarm workers of node 1's manager), then node 1.
  for k in $(extra_nodes); do stop_node "$k"; done
  stop_node 1
  # The sshd and what e2e-env.sh made for it.
  bash "$REPO/scripts/e2e-env.sh" down "$DIR/host"
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^$NETNS-n[0-9]\$" || true); do delete_netns "$ns"; done
  delete_netns "$NETNS"
  local cg
  for cg in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/*/"$CGROUP_PARENT"-n[0-9]; do
    [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d $cg ]] && log "WARNING: could not remove cgroup $cg"
  done
  if [[ -n $(mounts_under "$DIR") ]]; then log "ERROR: mounts remain:"; mounts_under "$DIR" >&2; return 1; fi
  # Logs stay for a look after a failed run; data, sockets and the plugins' directories go.
  rm -rf --one-file-system -- "$DIR/docker-data" "$DIR/plugins" "$DIR"/podman-* "$DIR/managed" "$DIR/rootfs" \
    "$DIR/plugin-sockets" "$DIR/newroot" "$DIR/bin" "$DIR/env" "$DIR/docker.sock" "$DIR"/csi "$DIR"/csi-*
  for k in $(extra_nodes); do
    rm -rf --one-file-system -- "$DIR/node$k/docker-data" "$DIR/node$k/plugin-sockets" "$DIR/node$k/newroot" \
      "$DIR/node$k/rootfs" "$DIR/node$k/docker.sock"
  done
  log "down: nothing left running, mounted or namespaced for $DIR"
}

case $CMD in
up) do_up ;;
down) do_down ;;
*) usage ;;
esac
