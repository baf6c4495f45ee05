#!/usr/bin/env bash
# Multi-node Swarm environment for the end-to-end tests: N dockerd nodes (default 3), each in its own network
# namespace, joined as one swarm (node 1 the manager), an sshd file server every node reaches, and the managed plugin
# installed on every node with `npm run plugin:install`.
#
#   scripts/swarm-env.sh up   DIR            start it all; write DIR/env (KEY=VALUE lines, literal values, mode 0600)
#   scripts/swarm-env.sh down DIR            stop and remove everything `up` made (idempotent; `up` runs it first)
#   scripts/swarm-env.sh dockerd-kill DIR I  SIGKILL node I's dockerd (a crashed node; its containers keep running)
#   scripts/swarm-env.sh dockerd-start DIR I start node I's dockerd again (it rejoins the swarm by itself)
#
# Network: a "hub" namespace holds a bridge (10.99.0.1/24) and the sshd; node I's namespace has eth0 = 10.99.0.(10+I),
# a veth to the hub's bridge. Nothing is created in the host's network namespace. Must run as root.
# Optional environment: SWARM_NODES (2..9, default 3), SWARM_DOCKERD_WAIT (seconds, default 60).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SSH_USER=sshfsswarm
IMAGE=e2e-busybox:latest
HUB_ADDR=10.99.0.1

log() { printf '[swarm-env] %s\n' "$*" >&2; }
die() { printf '[swarm-env] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: $0 up|down DIR | dockerd-kill|dockerd-start DIR NODE" >&2; exit 2; }

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$(realpath -m -- "$2")
NODE_ARG=${3:-}
[[ $DIR != / && -n $DIR ]] || die "refusing to use DIR=$DIR"
ENV_ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-8)
NS_PREFIX=sshfssw-$ENV_ID
NS_HUB=$NS_PREFIX-hub
NODES=${SWARM_NODES:-3}
[[ $NODES =~ ^[2-9]$ ]] || die "SWARM_NODES must be 2..9"

node_ns() { echo "$NS_PREFIX-n$1"; }
node_addr() { echo "10.99.0.$((10 + $1))"; }
node_dir() { echo "$DIR/node$1"; }
node_sock() { echo "$DIR/node$1/docker.sock"; }
ndocker() { local i=$1; shift; DOCKER_HOST="unix://$(node_sock "$i")" DOCKER_CLI_HINTS=false docker "$@"; }

# shellcheck source=lib/procs.sh
. "$REPO/scripts/lib/procs.sh"
# shellcheck source=lib/test-env.sh
. "$REPO/scripts/lib/test-env.sh"

exec_base() { [[ -f $DIR/exec-root ]] && cat "$DIR/exec-root" || true; }

# ---------------------------------------------------------------------------------------------------------------
# dockerd of one node

start_dockerd() {
  local i=$1 base nd
  base=$(exec_base)
  nd=$(node_dir "$i")
  [[ -n $base ]] || die "no exec root recorded: run up first"
  mkdir -p "$nd" "$base/n$i"
  echo '{}' >"$nd/daemon.json"
  local args=(
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false
    --config-file "$nd/daemon.json" --data-root "$nd/docker-data" --exec-root "$base/n$i"
    --pidfile "$nd/dockerd.pid" -H "unix://$(node_sock "$i")"
  )
  # Each node gets its own mount namespace with an empty /run/docker/plugins: the host's holds every legacy plugin
  # socket of the machine, dead ones too, and dockerd probes them all (slowly the dead ones) when it looks a volume up.
  # A node restarted after a kill rejoins the namespace its containers (their shims) still live in.
  # nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then finds no cgroups.
  local pid mntns=''
  for pid in $(pids_with_cmdline "$base/n$i/"); do mntns=/proc/$pid/ns/mnt; break; done
  if [[ -n $mntns ]]; then
    nsenter --net="/run/netns/$(node_ns "$i")" --mount="$mntns" setsid dockerd "${args[@]}" \
      >>"$nd/dockerd.log" 2>&1 </dev/null &
  else
    nsenter --net="/run/netns/$(node_ns "$i")" unshare --mount --propagation slave setsid sh -c \
      'mount -t tmpfs -o mode=0755 sshfs-swarm-plugins /run/docker/plugins && exec dockerd "$@"' dockerd "${args[@]}" \
      >>"$nd/dockerd.log" 2>&1 </dev/null &
  fi
  wait_dockerd "$(node_sock "$i")" $! "${SWARM_DOCKERD_WAIT:-60}" "$nd/dockerd.log" "dockerd of node $i"
}

stop_dockerd() {
  local i=$1 signal=${2:-TERM} pid
  pid=$(cat "$(node_dir "$i")/dockerd.pid" 2>/dev/null || true)
  pid_matches "$pid" "$(node_sock "$i")" || return 0
  if [[ $signal == KILL ]]; then
    log "killing dockerd of node $i (pid $pid)"
    kill -KILL "$pid"
    until pid_gone "$pid"; do sleep 0.1; done
  else
    log "stopping dockerd of node $i (pid $pid)"
    stop_pid "$pid" 40
  fi
  rm -f "$(node_dir "$i")/dockerd.pid"
}

# ---------------------------------------------------------------------------------------------------------------
# down

do_down() {
  [[ -d $DIR ]] || { log "nothing to do: $DIR does not exist"; return 0; }
  local base pid i ns
  base=$(exec_base)
  [[ -z $base || $base == /tmp/sshfs-sw.* ]] || die "unexpected exec root $base"
  for ((i = 1; i <= 9; i++)); do [[ -d $(node_dir "$i") ]] && stop_dockerd "$i"; done
  # containerd, shims and plugin processes started under our exec roots.
  if [[ -n $base ]]; then
    for pid in $(pids_with_cmdline "$base/"); do stop_pid "$pid" 10; done
  fi
  if [[ -f $DIR/sshd.pid ]]; then
    pid=$(cat "$DIR/sshd.pid" 2>/dev/null || true)
    if pid_matches "$pid" "$DIR/ssh/sshd_config"; then
      for i in $(descendants "$pid"); do stop_pid "$i" 5; done
      stop_pid "$pid" 10
    fi
    rm -f "$DIR/sshd.pid"
  fi
  MOUNT_TYPE=fuse.sshfs unmount_under "$DIR" "$base"
  unmount_under "$DIR" "$base"
  # sshfs/ssh processes of the plugins' mounts end with their mounts; make sure.
  for pid in $(pids_with_cmdline "$DIR/"); do
    case $(cat "/proc/$pid/comm" 2>/dev/null) in sshfs | ssh) stop_pid "$pid" 5 ;; esac
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX-" || true); do
    # Whatever still runs in a node's network is ours: e.g. an sshfs left by a plugin whose dockerd was killed.
    delete_netns "$ns"
  done
  if [[ -n $base && -d $base ]]; then rm -rf --one-file-system -- "$base" || log "WARNING: could not remove $base"; fi
  rm -f "$DIR/exec-root" "$DIR/env"
  # Logs stay for a look after a failed run; the nodes' data and the plugin's rootfs go.
  local d
  for d in "$DIR"/node*/docker-data "$DIR/plugin"; do
    [[ -d $d && -z $(mounts_under "$d") ]] && rm -rf --one-file-system -- "$d"
  done
  if [[ -n $(mounts_under "$DIR" "$base") ]]; then log "ERROR: mounts remain:"; mounts_under "$DIR" "$base" >&2; return 1; fi
  log "down: nothing left running, mounted or namespaced for $DIR"
}

# ---------------------------------------------------------------------------------------------------------------
# up

do_up() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  bash "$REPO/scripts/install-system-deps.sh" docker.io sshfs openssh-server openssh-client busybox-static tini fuse3 iproute2
  do_down
  rm -rf --one-file-system -- "$DIR"
  install -d -m 0700 "$DIR" "$DIR/ssh"
  local base i home remote
  base=$(mktemp -d /tmp/sshfs-sw.XXXX)
  echo "$base" >"$DIR/exec-root"

  # --- the file server's user, keys and remote directory
  ssh-keygen -q -t ed25519 -N '' -C sshfs-swarm-host -f "$DIR/ssh/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C sshfs-swarm-client -f "$DIR/ssh/id_ed25519"
  ensure_user "$SSH_USER"
  # '*' = no password but not locked: sshd without PAM refuses a locked account even with a key.
  usermod -p '*' "$SSH_USER"
  home=$(getent passwd "$SSH_USER" | cut -d: -f6)
  install -m 0600 -o "$SSH_USER" -g "$(id -gn "$SSH_USER")" "$DIR/ssh/id_ed25519.pub" "$home/.ssh/authorized_keys.swarm-$ENV_ID"
  remote=$(fresh_remote_dir "$SSH_USER")

  # --- network: hub namespace with a bridge; one veth per node namespace
  ip netns add "$NS_HUB"
  ip -n "$NS_HUB" link set lo up
  ip -n "$NS_HUB" link add br0 type bridge
  ip -n "$NS_HUB" addr add "$HUB_ADDR/24" dev br0
  ip -n "$NS_HUB" link set br0 up
  for ((i = 1; i <= NODES; i++)); do
    ip netns add "$(node_ns "$i")"
    ip -n "$(node_ns "$i")" link set lo up
    ip -n "$NS_HUB" link add "v$i" type veth peer name eth0 netns "$(node_ns "$i")"
    ip -n "$NS_HUB" link set "v$i" master br0 up
    ip -n "$(node_ns "$i")" addr add "$(node_addr "$i")/24" dev eth0
    ip -n "$(node_ns "$i")" link set eth0 up
  done

  # --- sshd in the hub namespace
  cat >"$DIR/ssh/sshd_config" <<EOF
# sshd for the sshfs plugin swarm tests only: inside the test's hub namespace.
Port 22
ListenAddress $HUB_ADDR
HostKey $DIR/ssh/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys.swarm-$ENV_ID
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $SSH_USER
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
Subsystem sftp internal-sftp
EOF
  install -d -m 0755 /run/sshd
  nsenter --net="/run/netns/$NS_HUB" /usr/sbin/sshd -f "$DIR/ssh/sshd_config" -E "$DIR/sshd.log" ||
    die "sshd did not start (log: $DIR/sshd.log)"
  printf '%s %s\n' "$HUB_ADDR" "$(cut -d' ' -f1,2 "$DIR/ssh/ssh_host_ed25519_key.pub")" >"$DIR/ssh/known_hosts"
  # shellcheck disable=SC2034 # ssh_check runs ssh under SSH_WRAP
  local ok=0 SSH_WRAP=(nsenter --net="/run/netns/$(node_ns 1)")
  for ((i = 0; i < 50; i++)); do
    if ssh_check "$DIR/ssh/id_ed25519" "$DIR/ssh/known_hosts" "$DIR/ssh-check.log" -o ConnectTimeout=5 \
      "$SSH_USER@$HUB_ADDR"; then ok=1; break; fi
    sleep 0.2
  done
  [[ $ok -eq 1 ]] || { cat "$DIR/ssh-check.log" >&2; die "node 1 cannot log in to the sshd at $HUB_ADDR"; }

  # --- dockerd on every node, the busybox image on each
  busybox_tar "$DIR/rootfs" >"$DIR/busybox.tar"
  for ((i = 1; i <= NODES; i++)); do
    log "starting dockerd of node $i in $(node_ns "$i") ($(node_addr "$i"))"
    start_dockerd "$i"
    ndocker "$i" import -c 'CMD ["sh"]' "$DIR/busybox.tar" "$IMAGE" >/dev/null
  done

  # --- the swarm: node 1 manages, the others join as workers. A short heartbeat notices a dead node sooner.
  ndocker 1 swarm init --advertise-addr "$(node_addr 1)" --listen-addr "$(node_addr 1):2377" \
    --dispatcher-heartbeat 2s >/dev/null
  local token
  token=$(ndocker 1 swarm join-token -q worker)
  for ((i = 2; i <= NODES; i++)); do
    ndocker "$i" swarm join --advertise-addr "$(node_addr "$i")" --listen-addr "$(node_addr "$i"):2377" \
      --token "$token" "$(node_addr 1):2377" >/dev/null
  done
  log "swarm: $(ndocker 1 node ls --format '{{.Hostname}}/{{.Status}}/{{.Availability}}' | tr '\n' ' ')"

  # --- the managed plugin on every node, the way the README says (the key copied into each node's keys source)
  for ((i = 1; i <= NODES; i++)); do
    install -d -m 0700 "$(node_dir "$i")/keys"
    install -m 0600 "$DIR/ssh/id_ed25519" "$(node_dir "$i")/keys/id_ed25519"
    install -m 0600 "$DIR/ssh/known_hosts" "$(node_dir "$i")/keys/known_hosts"
    log "installing the managed plugin on node $i"
    (
      cd "$REPO"
      DOCKER_HOST="unix://$(node_sock "$i")" PLUGIN_DIR="$DIR/plugin" PLUGIN_BUILDER=offline \
        PLUGIN_SKIP_APP_BUILD="${SWARM_SKIP_APP_BUILD:-0}" PLUGIN_STATE_SOURCE="$(node_dir "$i")/plugin-state" \
        PLUGIN_KEYS_SOURCE="$(node_dir "$i")/keys" PLUGIN_DEBUG=1 npm run --silent plugin:install
    ) >>"$DIR/plugin-install.log" 2>&1 || { tail -n 30 "$DIR/plugin-install.log" >&2; die "plugin install on node $i failed"; }
  done
  # The manager schedules a task only on nodes that have reported the plugin ("missing plugin on N nodes").
  local id k
  for ((i = 1; i <= NODES; i++)); do
    id=$(ndocker "$i" info --format '{{.Swarm.NodeID}}')
    for ((k = 0; k < 120; k++)); do
      ndocker 1 node inspect "$id" --format '{{range .Description.Engine.Plugins}}{{.Type}}:{{.Name}} {{end}}' |
        grep -q 'Volume:sshfs:latest' && break
      sleep 0.5
    done
    [[ $k -lt 120 ]] || die "node $i never reported the sshfs plugin to the manager"
  done

  (
    umask 077
    {
      echo "NODES=$NODES"
      for ((i = 1; i <= NODES; i++)); do
        echo "DOCKER_HOST_$i=unix://$(node_sock "$i")"
        echo "NODE_ADDR_$i=$(node_addr "$i")"
        echo "NODE_ID_$i=$(ndocker "$i" info --format '{{.Swarm.NodeID}}')"
      done
      echo "SSH_HOST=$HUB_ADDR"
      echo "SSH_USER=$SSH_USER"
      echo "SSH_KEY_FILE=$DIR/ssh/id_ed25519"
      echo "REMOTE_DIR=$remote"
      echo "E2E_IMAGE=$IMAGE"
      echo "EXEC_ROOT=$base"
    } >"$DIR/env.tmp"
  )
  mv "$DIR/env.tmp" "$DIR/env"
  log "up: $NODES nodes; environment written to $DIR/env"
}

node_arg() {
  [[ $NODE_ARG =~ ^[1-9]$ && -d $(node_dir "$NODE_ARG") ]] || die "no node '$NODE_ARG' in $DIR"
  echo "$NODE_ARG"
}

case $CMD in
up) do_up ;;
down) do_down ;;
dockerd-kill) stop_dockerd "$(node_arg)" KILL ;;
dockerd-start) start_dockerd "$(node_arg)" ;;
*) usage ;;
esac
