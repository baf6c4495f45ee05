# shellcheck shell=bash
# Sourced by the test environments (e2e-env.sh, swarm-env.sh, trixie-env.sh): finding and stopping the processes,
# finding and unmounting the mounts, and deleting the network namespaces that a test environment left behind.
# Uses: log (the sourcing script's).

# True when PID is alive and its command line contains NEEDLE (guards against recycled PIDs).
pid_matches() {
  local pid=$1 needle=$2 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$needle"* ]]
}

# True when PID is gone or a zombie (a zombie child of ours counts as gone).
pid_gone() {
  kill -0 "$1" 2>/dev/null || return 0
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

# stop_pid PID TIMEOUT_SECONDS: SIGTERM, bounded wait, then SIGKILL.
stop_pid() {
  local pid=$1 timeout=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    pid_gone "$pid" && return 0
    sleep 0.1
  done
  log "pid $pid did not stop after ${timeout}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_gone "$pid" && return 0
    sleep 0.1
  done
  log "WARNING: pid $pid still alive after SIGKILL"
}

# All descendants of PID (children first... then theirs), one per line.
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
  return 0
}

# PIDs, other than this shell and its subshell, for which PREDICATE PID ARG is true.
pids_where() {
  local predicate=$1 arg=$2 p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    "$predicate" "$pid" "$arg" && echo "$pid"
  done
  return 0
}

# True when an entry of the environment of PID contains TEXT (e.g. NAME=VALUE-prefix).
env_has() { tr '\0' '\n' 2>/dev/null <"/proc/$1/environ" | grep -qF -- "$2"; }

# PIDs whose command line contains NEEDLE.
pids_with_cmdline() { pids_where pid_matches "$1"; }

# PIDs with an environment entry that contains TEXT.
pids_with_env_prefix() { pids_where env_has "$1"; }

# Mount points (decoded) under any of the given prefixes, deepest first. Optional fstype filter via $MOUNT_TYPE.
mounts_under() {
  local prefix fstype mp
  # mountinfo: id parent maj:min root mountpoint options [optional...] - fstype source superopts
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $5; break } }' /proc/self/mountinfo |
    while read -r fstype mp; do
      if [[ -n ${MOUNT_TYPE:-} && $fstype != "$MOUNT_TYPE" ]]; then continue; fi
      mp=$(printf '%b' "${mp//\\/\\0}")
      for prefix in "$@"; do
        [[ -z $prefix ]] && continue
        if [[ $mp == "$prefix" || $mp == "$prefix"/* ]]; then
          echo "$mp"
          break
        fi
      done
    done | sort -u | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

# Lazily unmounts every mount under the given prefixes, deepest first ($MOUNT_TYPE as for mounts_under).
unmount_under() {
  local mp
  while IFS= read -r mp; do
    [[ -z $mp ]] && continue
    log "unmounting $mp"
    umount -l -- "$mp" 2>/dev/null || fusermount3 -uz -- "$mp" 2>/dev/null || fusermount -uz -- "$mp" 2>/dev/null ||
      log "WARNING: could not unmount $mp"
  done < <(mounts_under "$@")
}

# Deletes the network namespace NS after stopping whatever still runs in it.
delete_netns() {
  local ns=$1 pid
  ip netns list 2>/dev/null | awk '{ print $1 }' | grep -qx "$ns" || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    log "stopping leftover process $pid in $ns ($(cat "/proc/$pid/comm" 2>/dev/null))"
    stop_pid "$pid" 5
  done
  log "deleting network namespace $ns"
  ip netns del "$ns" || log "WARNING: could not delete $ns"
}
