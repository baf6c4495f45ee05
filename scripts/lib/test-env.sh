# shellcheck shell=bash
# Sourced by scripts/e2e-env.sh and scripts/swarm-env.sh: the pieces both test environments are made of (a login
# user on this machine, its remote directory, the busybox image, a dockerd that answers, a key login to the sshd).
# Uses: log, die (the sourcing script's), ENV_ID (this environment's id), mounts_under (scripts/lib/procs.sh).

# A local login user for the test sshd, with a home and ~/.ssh that sshd's StrictModes accepts.
ensure_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    log "creating user $user"
    useradd --create-home --shell /bin/sh --user-group "$user"
  fi
  local home
  home=$(getent passwd "$user" | cut -d: -f6)
  [[ -d $home ]] || { mkdir -p "$home"; chown "$user:" "$home"; }
  # StrictModes: home and ~/.ssh not writable by group/others, owned by the user.
  chown "$user:" "$home"
  chmod 0755 "$home"
  install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.ssh"
}

# A fresh, empty remote directory owned by USER, ~USER/data-$ENV_ID; prints its path.
fresh_remote_dir() {
  local user=$1 home
  home=$(getent passwd "$user" | cut -d: -f6)
  local d="$home/data-$ENV_ID"
  if [[ -n $(MOUNT_TYPE='' mounts_under "$d") ]]; then die "$d has mounts under it; run down first"; fi
  rm -rf --one-file-system -- "$d"
  install -d -m 0755 -o "$user" -g "$(id -gn "$user")" "$d"
  echo "$d"
}

busybox_binary() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then echo "$b"; return 0; fi
  done
  die "no statically linked busybox found (install busybox-static)"
}

# busybox_tar WORK_DIR: writes to stdout the root filesystem of the tests' busybox image (for `docker import`),
# assembled in WORK_DIR (removed again): this machine's static busybox with its applets, root in passwd and group.
busybox_tar() {
  local rootfs=$1 bb
  bb=$(busybox_binary)
  # No /data in the image: a volume mounted there gets no copy-up (see the copy-up test for that case).
  install -d "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
  chmod 1777 "$rootfs/tmp"
  cp "$bb" "$rootfs/bin/busybox"
  chroot "$rootfs" /bin/busybox --install -s /bin
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
  tar -C "$rootfs" -c .
  rm -rf --one-file-system -- "$rootfs"
}

# wait_dockerd SOCKET PID SECONDS LOG WHAT: waits until the dockerd (PID) at SOCKET answers; dies, showing the end of
# its LOG, when it exits or does not answer within SECONDS. WHAT names it in the messages.
wait_dockerd() {
  local sock=$1 pid=$2 wait_s=$3 log_file=$4 what=$5 i
  for ((i = 0; i < wait_s * 4; i++)); do
    DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log_file" >&2 || true
      die "$what exited during startup (log: $log_file)"
    fi
    sleep 0.25
  done
  tail -n 30 "$log_file" >&2 || true
  die "$what did not answer within ${wait_s}s (log: $log_file)"
}

# ssh_check KEY KNOWN_HOSTS ERR_FILE [ssh options...] USER@HOST: one key login that runs `true`, with nothing but KEY
# and the host key in KNOWN_HOSTS, no prompt; ssh's messages go to ERR_FILE. $SSH_WRAP (an array, e.g. nsenter ...)
# runs it in another namespace.
ssh_check() {
  local key=$1 known_hosts=$2 err_file=$3
  shift 3
  ${SSH_WRAP[@]+"${SSH_WRAP[@]}"} ssh -F /dev/null -i "$key" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$known_hosts" -o StrictHostKeyChecking=yes "$@" true </dev/null 2>"$err_file"
}
