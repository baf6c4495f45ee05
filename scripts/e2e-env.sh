#!/usr/bin/env bash
# End-to-end test environment for the sshfs volume plugin.
#
#   scripts/e2e-env.sh up   DIR   start an isolated dockerd + sshd, create test users, import a busybox image,
#                                 write DIR/env (KEY=VALUE lines, literal values, mode 0600)
#   scripts/e2e-env.sh down DIR   stop everything `up` started, unmount what is left under DIR, remove the exec root
#   scripts/e2e-env.sh status DIR print what is running / mounted for DIR
#   scripts/e2e-env.sh dockerd-stop|dockerd-start DIR   stop / start again the dockerd of DIR (fault tests)
#   scripts/e2e-env.sh sshd-stop|sshd-start DIR         stop (with its connections) / start again the sshd of DIR
#
# DIR should be an absolute path (it is resolved otherwise). Must run as root: dockerd, FUSE and local users need it.
# `down` is idempotent and is run by `up` first, so a crashed previous run is cleaned up.
#
# Optional environment:
#   E2E_STORAGE_DRIVER   force dockerd's --storage-driver (default: dockerd chooses, overlay2 where possible)
#   E2E_DOCKERD_WAIT     seconds to wait for dockerd to answer (default 60)
#   E2E_NO_DOCKERD=1     no dockerd and no image: the sshd side only (scripts/trixie-env.sh brings its own dockerd)
#   E2E_SSHD_EXTRA_ADDR  one more address sshd listens on (same port), e.g. a bridge's that other network namespaces
#                        route to (scripts/trixie-env.sh's multi-node swarm)
set -euo pipefail

KEY_USER=sshfse2ekey
PW_USER=sshfse2epw
IMAGE=e2e-busybox:latest
PLUGIN_SOCKET_DIR=/run/docker/plugins

log() { printf '[e2e-env] %s\n' "$*" >&2; }
die() { printf '[e2e-env] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: $0 up|down|status|dockerd-stop|dockerd-start|sshd-stop|sshd-start DIR" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$(realpath -m -- "$2")
[[ $DIR != / && -n $DIR ]] || die "refusing to use DIR=$DIR"
# The test users are machine-wide and may serve several environments at once (other DIRs): everything per
# environment (authorized keys file, remote dirs) carries this id, and the password is shared and kept stable.
ENV_ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-10)
PASSWORD_FILE=/var/lib/sshfs-e2e/password

# ---------------------------------------------------------------------------------------------------------------
# helpers

# shellcheck source=lib/procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"
# shellcheck source=lib/test-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/test-env.sh"
# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

exec_root_of() {
  local f="$DIR/exec-root"
  [[ -f $f ]] && cat "$f" || true
}

# ---------------------------------------------------------------------------------------------------------------
# down

do_down() {
  [[ -d $DIR ]] || { log "nothing to do: $DIR does not exist"; return 0; }
  local exec_root pid name d
  exec_root=$(exec_root_of)

  # 1. dockerd first: on shutdown it stops containers and sends Unmount to the (still running) plugins.
  if [[ -f $DIR/dockerd.pid ]]; then
    pid=$(cat "$DIR/dockerd.pid" 2>/dev/null || true)
    if pid_matches "$pid" "$DIR/docker.sock"; then
      log "stopping dockerd (pid $pid)"
      stop_pid "$pid" 40
    fi
    rm -f "$DIR/dockerd.pid"
  fi
  # Managed containerd, shims and anything else started with our exec root on its command line.
  if [[ -n $exec_root && $exec_root == /tmp/sshfs-e2e.* ]]; then
    for pid in $(pids_with_cmdline "$exec_root"); do
      log "stopping leftover process $pid ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-100))"
      stop_pid "$pid" 10
    done
  fi

  # 2. Plugins started by the test harness (recorded pid, verified by their STATE_DIR environment entry).
  if [[ -d $DIR/plugins ]]; then
    for d in "$DIR"/plugins/*/; do
      [[ -d $d ]] || continue
      name=$(basename "$d")
      if [[ -f $d/plugin.pid ]]; then
        pid=$(cat "$d/plugin.pid" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && env_has "$pid" "STATE_DIR=$DIR/plugins/"; then
          log "stopping plugin $name (pid $pid)"
          stop_pid "$pid" 10
        fi
        rm -f "$d/plugin.pid"
      fi
      if [[ $name == sshfs-e2e-* ]]; then
        rm -f "$PLUGIN_SOCKET_DIR/$name.sock"
      fi
    done
    # Any other process started with a STATE_DIR of ours (e.g. a plugin whose pid file was not written).
    for pid in $(pids_with_env_prefix "STATE_DIR=$DIR/plugins/"); do
      log "stopping leftover process $pid (started with STATE_DIR under $DIR/plugins: plugin, sshfs or ssh)"
      stop_pid "$pid" 10
    done
  fi

  # 3. sshd: its per-connection children first, then the listener.
  if [[ -f $DIR/sshd.pid ]]; then
    pid=$(cat "$DIR/sshd.pid" 2>/dev/null || true)
    if pid_matches "$pid" "$DIR/ssh/sshd_config"; then
      # Connection processes ("sshd: user [priv]", "sshd: user@notty") of this sshd only: other environments
      # may serve the same users.
      local child
      for child in $(descendants "$pid"); do stop_pid "$child" 5; done
      log "stopping sshd (pid $pid)"
      stop_pid "$pid" 10
    fi
    rm -f "$DIR/sshd.pid"
  fi

  # 3b. The server matrix's own sshds and Dropbear (test/e2e/test-servers.ts), if a test worker died with them.
  # They live outside DIR (sshd's StrictModes refuses a path under a world-writable directory such as /tmp).
  local servers_dir=/var/lib/sshfs-e2e-servers/$ENV_ID
  for pid in $(pids_with_cmdline "$servers_dir/"); do
    case $(cat "/proc/$pid/comm" 2>/dev/null) in
    sshd | dropbear) log "stopping leftover test server $pid"; stop_pid "$pid" 5 ;;
    esac
  done
  rm -rf "$servers_dir"

  # 4. Unmount: sshfs mounts first (lazily), then whatever dockerd left (overlay, shm, netns...).
  MOUNT_TYPE=fuse.sshfs unmount_under "$DIR" "$exec_root"
  unmount_under "$DIR" "$exec_root"
  # sshfs processes serving mounts under DIR exit once unmounted; make sure.
  for pid in $(pids_with_cmdline "$DIR/"); do
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == sshfs || $(cat "/proc/$pid/comm" 2>/dev/null) == ssh ]]; then
      log "stopping leftover $(cat "/proc/$pid/comm" 2>/dev/null) process $pid"
      stop_pid "$pid" 5
    fi
  done

  # 5. Exec root.
  if [[ -n $exec_root && $exec_root == /tmp/sshfs-e2e.* && -d $exec_root ]]; then
    rm -rf --one-file-system -- "$exec_root" || log "WARNING: could not remove $exec_root"
  fi
  rm -f "$DIR/exec-root" "$DIR/docker.sock"

  # 6. Verify.
  local bad=0
  if [[ -n $(mounts_under "$DIR" "$exec_root") ]]; then
    log "ERROR: mounts remain:"; mounts_under "$DIR" "$exec_root" >&2; bad=1
  fi
  local comm
  for pid in $(pids_with_cmdline "$DIR/") $(pids_with_env_prefix "STATE_DIR=$DIR/plugins/"); do
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    case $comm in
    dockerd | containerd* | sshd | sshfs | ssh | node | runc)
      log "ERROR: process remains: $pid $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-160)"
      bad=1
      ;;
    esac
  done
  [[ $bad -eq 0 ]] || return 1
  log "down: nothing left running or mounted for $DIR"
}

# ---------------------------------------------------------------------------------------------------------------
# up

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  command -v sshfs >/dev/null 2>&1 || missing+=(sshfs)
  [[ -x /usr/sbin/sshd ]] && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-server)
  command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || missing+=(sshfs)
  [[ -z $(missing_packages busybox-static) ]] || missing+=(busybox-static)
  command -v tini >/dev/null 2>&1 || missing+=(tini)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  install_or_die "missing packages: ${missing[*]} (install them, as root, with apt-get)" "${missing[@]}"
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  die "no free TCP port found"
}

start_dockerd() {
  local exec_root=$1
  local args=(
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false
    --config-file "$DIR/daemon.json"
    --data-root "$DIR/docker-data"
    --exec-root "$exec_root"
    --pidfile "$DIR/dockerd.pid"
    --containerd-namespace sshfs-e2e
    --containerd-plugins-namespace sshfs-e2e-plugins
    -H "unix://$DIR/docker.sock"
  )
  [[ -n ${E2E_STORAGE_DRIVER:-} ]] && args+=(--storage-driver "$E2E_STORAGE_DRIVER")
  echo '{}' >"$DIR/daemon.json"
  log "starting dockerd (data-root $DIR/docker-data, exec-root $exec_root)"
  setsid dockerd "${args[@]}" >"$DIR/dockerd.log" 2>&1 </dev/null &
  wait_dockerd "$DIR/docker.sock" $! "${E2E_DOCKERD_WAIT:-60}" "$DIR/dockerd.log" dockerd
  log "dockerd is up ($(DOCKER_HOST="unix://$DIR/docker.sock" docker info --format '{{.ServerVersion}}, {{.Driver}}'))"
}

start_sshd() {
  local port=$1
  local conf="$DIR/ssh/sshd_config"
  cat >"$conf" <<EOF
# sshd for the sshfs plugin e2e tests only: loopback, two test users.
Port $port
ListenAddress 127.0.0.1
${E2E_SSHD_EXTRA_ADDR:+ListenAddress $E2E_SSHD_EXTRA_ADDR}
HostKey $DIR/ssh/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys.sshfs-e2e-$ENV_ID
PubkeyAuthentication yes
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PermitRootLogin no
AllowUsers $KEY_USER $PW_USER
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY yes
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
  install -d -m 0755 /run/sshd
  /usr/sbin/sshd -t -f "$conf" || die "sshd rejected $conf"
  # sshd binds before it daemonizes, so a failed bind is a non-zero exit here.
  /usr/sbin/sshd -f "$conf" -E "$DIR/sshd.log"
}

do_up() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (dockerd, FUSE, useradd)"
  ensure_packages
  [[ -e /dev/fuse ]] || die "/dev/fuse is missing: FUSE is not available on this machine"

  # Start from a clean slate: stop a previous run, then wipe its data.
  do_down
  install -d -m 0755 "$DIR"
  if [[ -n $(mounts_under "$DIR") ]]; then die "mounts remain under $DIR; cannot continue"; fi
  rm -rf --one-file-system -- "$DIR/docker-data" "$DIR/plugins" "$DIR/ssh" "$DIR/keys" "$DIR/rootfs" "$DIR/env"
  install -d -m 0700 "$DIR/ssh"
  # The plugin's keys directory (KEYS_DIR): the only place a volume's IdentityFile or known_hosts may name.
  install -d -m 0700 "$DIR/keys"
  install -d -m 0755 "$DIR/plugins"
  install -d -m 0755 "$PLUGIN_SOCKET_DIR"

  # --- ssh keys and users
  ssh-keygen -q -t ed25519 -N '' -C sshfs-e2e-host -f "$DIR/ssh/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C sshfs-e2e-client -f "$DIR/keys/id_ed25519"
  ensure_user "$KEY_USER"
  ensure_user "$PW_USER"

  local key_home pw_home
  key_home=$(getent passwd "$KEY_USER" | cut -d: -f6)
  pw_home=$(getent passwd "$PW_USER" | cut -d: -f6)
  install -m 0600 -o "$KEY_USER" -g "$(id -gn "$KEY_USER")" "$DIR/keys/id_ed25519.pub" \
    "$key_home/.ssh/authorized_keys.sshfs-e2e-$ENV_ID"
  # '*' = no password but not "locked" ('!'), which sshd (without PAM) would refuse even for key logins.
  usermod -p '*' "$KEY_USER"
  : >"$pw_home/.ssh/authorized_keys.sshfs-e2e-$ENV_ID"
  chown "$PW_USER:" "$pw_home/.ssh/authorized_keys.sshfs-e2e-$ENV_ID"
  chmod 0600 "$pw_home/.ssh/authorized_keys.sshfs-e2e-$ENV_ID"

  # A password with characters that break naive handling: space, comma, $, !, quotes, =, #. Generated once per
  # machine and kept (root-only) so that environments running side by side agree on it.
  local password
  install -d -m 0700 "$(dirname "$PASSWORD_FILE")"
  if [[ ! -s $PASSWORD_FILE ]]; then
    (
      umask 077
      printf '%s' "p@ss w,rd!\$'\"=#$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$PASSWORD_FILE"
    )
  fi
  password=$(cat "$PASSWORD_FILE")
  printf '%s:%s\n' "$PW_USER" "$password" | chpasswd

  local key_remote pw_remote
  key_remote=$(fresh_remote_dir "$KEY_USER")
  pw_remote=$(fresh_remote_dir "$PW_USER")

  # --- sshd
  # A port found free can be taken before sshd binds it, and an sshd can die right after it daemonizes: retry both
  # on a new port instead of failing the whole run.
  local port started=0 i
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    if start_sshd "$port" 2>>"$DIR/sshd.log"; then
      for ((i = 0; i < 50; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then started=1; break; fi
        sleep 0.1
      done
      [[ $started -eq 1 ]] && break
      log "sshd started but does not listen on 127.0.0.1:$port, retrying on another port"
      [[ -f $DIR/sshd.pid ]] && stop_pid "$(cat "$DIR/sshd.pid")" 5
      rm -f "$DIR/sshd.pid"
    else
      log "sshd could not start on port $port, retrying"
    fi
  done
  [[ $started -eq 1 ]] || { tail -n 20 "$DIR/sshd.log" >&2; die "sshd did not start listening (log: $DIR/sshd.log)"; }
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$DIR/ssh/ssh_host_ed25519_key.pub")" >"$DIR/keys/known_hosts"
  log "sshd listening on 127.0.0.1:$port"

  # Sanity check: key login works (password login is checked by the tests through sshfs).
  if ! ssh_check "$DIR/keys/id_ed25519" "$DIR/keys/known_hosts" "$DIR/ssh-check.log" -p "$port" -o ConnectTimeout=10 \
    "$KEY_USER@127.0.0.1"; then
    cat "$DIR/ssh-check.log" >&2
    tail -n 20 "$DIR/sshd.log" >&2
    die "key login to the test sshd failed"
  fi

  # --- dockerd and the busybox image
  local exec_root=''
  if [[ ${E2E_NO_DOCKERD:-0} != 1 ]]; then
    exec_root=$(mktemp -d /tmp/sshfs-e2e.XXXX)
    echo "$exec_root" >"$DIR/exec-root"
    start_dockerd "$exec_root"
    busybox_tar "$DIR/rootfs" | DOCKER_HOST="unix://$DIR/docker.sock" docker import -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
    DOCKER_HOST="unix://$DIR/docker.sock" docker run --rm --network none "$IMAGE" true ||
      die "cannot run a container from $IMAGE (log: $DIR/dockerd.log)"
    log "imported $IMAGE"
  fi

  # --- env file (literal values, not shell-quoted: parse each line at its first '=')
  local env_tmp="$DIR/env.tmp"
  (
    umask 077
    cat >"$env_tmp" <<EOF
DOCKER_HOST=unix://$DIR/docker.sock
SSH_HOST=127.0.0.1
SSH_PORT=$port
SSH_KEY_USER=$KEY_USER
SSH_KEY_FILE=$DIR/keys/id_ed25519
SSH_PW_USER=$PW_USER
SSH_PW=$password
SSH_KEY_REMOTE_DIR=$key_remote
SSH_PW_REMOTE_DIR=$pw_remote
SSH_KNOWN_HOST_KEY=$DIR/ssh/ssh_host_ed25519_key.pub
SSH_KNOWN_HOSTS_FILE=$DIR/keys/known_hosts
KEYS_DIR=$DIR/keys
E2E_IMAGE=$IMAGE
EXEC_ROOT=$exec_root
E2E_DIR=$DIR
EOF
  )
  mv "$env_tmp" "$DIR/env"
  chmod 0600 "$DIR/env"
  log "up: environment written to $DIR/env"
}

do_status() {
  local exec_root pid
  exec_root=$(exec_root_of)
  pid=$(cat "$DIR/dockerd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$DIR/docker.sock"; then echo "dockerd: running (pid $pid)"; else echo "dockerd: stopped"; fi
  pid=$(cat "$DIR/sshd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$DIR/ssh/sshd_config"; then echo "sshd: running (pid $pid)"; else echo "sshd: stopped"; fi
  echo "mounts:"
  mounts_under "$DIR" "$exec_root" | sed 's/^/  /'
  echo "processes mentioning $DIR:"
  for pid in $(pids_with_cmdline "$DIR/"); do echo "  $pid $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-120)"; done
}

# --- for the fault tests: stop and start dockerd or sshd of an environment that is up, keeping its data.

do_dockerd_stop() {
  local pid
  pid=$(cat "$DIR/dockerd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$DIR/docker.sock"; then
    log "stopping dockerd (pid $pid)"
    stop_pid "$pid" 40
  fi
  rm -f "$DIR/dockerd.pid"
}

do_dockerd_start() {
  local exec_root
  exec_root=$(exec_root_of)
  [[ -n $exec_root && -d $exec_root ]] || die "no exec root recorded in $DIR/exec-root: run up first"
  start_dockerd "$exec_root"
}

do_sshd_stop() {
  local pid child children
  pid=$(cat "$DIR/sshd.pid" 2>/dev/null || true)
  if pid_matches "$pid" "$DIR/ssh/sshd_config"; then
    # The listener first, so that no client reconnects in between; then the connections it had accepted.
    children=$(descendants "$pid")
    log "stopping sshd (pid $pid)"
    stop_pid "$pid" 10
    for child in $children; do stop_pid "$child" 5; done
  fi
  rm -f "$DIR/sshd.pid"
}

do_sshd_start() {
  local port i
  port=$(sed -n 's/^SSH_PORT=//p' "$DIR/env")
  [[ $port =~ ^[0-9]+$ ]] || die "no SSH_PORT in $DIR/env: run up first"
  start_sshd "$port" 2>>"$DIR/sshd.log" || die "sshd did not start on port $port (log: $DIR/sshd.log)"
  for ((i = 0; i < 50; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "sshd is not listening on 127.0.0.1:$port"
}

case $CMD in
up) do_up ;;
down) do_down ;;
status) do_status ;;
dockerd-stop) do_dockerd_stop ;;
dockerd-start) do_dockerd_start ;;
sshd-stop) do_sshd_stop ;;
sshd-start) do_sshd_start ;;
*) usage ;;
esac
