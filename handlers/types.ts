// What handlers work on (the volume record) and the dependencies every handler receives, in one place; the
// protocol's own types are in protocol.ts.
import type { Memory } from './memory.js';

/** What the plugin keeps per volume. Secrets live only here and in 0600 key files. */
export interface VolumeRecord {
  name: string;
  createdAt: string;
  /** Validated options exactly as the user gave them (secrets included), used to detect a conflicting re-create. */
  options: Record<string, string>;
  mountpoint: string;
  /** Path of the key file written from the `key` option, deleted with the volume. */
  keyFile?: string;
  /** Mount references: mount ID -> how many times Docker mounted it with that ID (docker cp repeats an ID). */
  mounts: Record<string, number>;
  lastError?: string;
  lastErrorAt?: string;
  mountedAt?: string;
  /** Set while no container uses the volume but unmount_delay keeps it mounted: when it will be unmounted. */
  idleUntil?: string;
  /** Id of the shared ssh connection (ssh-login.ts) the volume's last mount used; unset when it logged in alone. */
  sharedConnection?: string;
  /**
   * The sshfs the plugin started for the mount now at the mountpoint (kept across restarts: adopted from here, never
   * found by a process name). Unset: unmounted, or mounted by an older version of the plugin.
   */
  sshfs?: ProcessId;
  /**
   * When its mount appeared, in the clock of process start times (ticks after boot): sshfs's first ssh started before
   * (sshfs connects, then mounts), any later one is a reconnect.
   */
  mountedTicks?: number;
  /** When the stall watch aborted the mount (its server left requests unanswered for stall_timeout seconds). */
  stalledAt?: string;
  /** stall_timeout in force then, for Status. */
  stalledAfterSeconds?: number;
}

/**
 * A process the plugin started, known by its pid and its start time (field 22 of /proc/<pid>/stat, clock ticks after
 * boot): a pid the kernel hands to another process later never matches, and nothing another process runs or names
 * itself can pass for it.
 */
export interface ProcessId {
  pid: number;
  startTicks: number;
}

/** The only programs the plugin may ever run. */
export type Program = 'sshfs' | 'fusermount3' | 'ssh';

export interface RunOptions {
  /** Written to the program's stdin (the sshfs password); never logged. */
  input?: string;
  timeoutMs?: number;
  /**
   * Run the program in a process group of its own and, when it fails or times out, end that whole group: sshfs starts
   * ssh, which would otherwise outlive it (re-parented to PID 1, for good without keepalives).
   */
  endGroupOnFailure?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface StartOptions {
  /** Written to the program's stdin, which is then closed (the sshfs password); never logged. */
  input?: string;
  /**
   * Where its stdout and stderr go (appended): a file, not a pipe, so the program outlives a restart of the plugin
   * and what it says is still there to read.
   */
  outputFile: string;
}

/** A long-running program the plugin started, leading a process group of its own (its children belong to it). */
export interface StartedProcess {
  id: ProcessId;
  /** Settles when it exits: its exit code, or null when a signal ended it. */
  exited: Promise<number | null>;
  /** SIGKILL to its whole process group (sshfs and its ssh). */
  endGroup(): void;
}

export interface CommandRunner {
  run(program: Program, args: string[], options?: RunOptions): Promise<RunResult>;
  /** Starts a long-running program (sshfs in the foreground) and returns once it runs; throws when it cannot start. */
  start(program: Program, args: string[], options: StartOptions): Promise<StartedProcess>;
  /** A command is likely soon (a volume exists): get ready in the background, so the first Mount does not wait. */
  prepare?(): void;
}

/**
 * What is mounted right now (the kernel's view, or a fake one). 'stale' is a mount whose sshfs process is gone:
 * every access fails with "Transport endpoint is not connected". Found without touching the mount, so a hung
 * server can never block the caller.
 */
export type MountState = 'mounted' | 'stale' | 'absent';

export interface MountLook {
  state: MountState;
  /** Unset when nothing is mounted at the path. */
  device?: string;
}

export interface SshConnection {
  startedAt: Date;
  reconnected: boolean;
}

/** What the first request on a fresh mount got: an answer, an error (e.g. ENOTCONN), or nothing within the time. */
export type ProbeResult = { ok: true } | { ok: false; timedOut: boolean; error?: string };

export interface FuseConnection {
  waiting: number;
  abort(): Promise<boolean>;
}

/** What is mounted right now: the kernel's mount table, or a simulated one. */
export interface MountTable {
  isMounted(path: string): Promise<boolean>;
  /** The device (major:minor) of what is mounted at path, undefined when nothing is: one look, like isMounted. */
  deviceOf(path: string): Promise<string | undefined>;
  /**
   * server: the sshfs the plugin started for the mount at path. The mount is 'stale' when that process is gone (a FUSE
   * mount whose server died has its connection aborted by the kernel: every access fails). Without one (a mount made
   * by an older version) it counts as mounted.
   */
  state(path: string, server?: ProcessId): Promise<MountState>;
  /** state() and the device (major:minor) of what is mounted at path, from the same single look at the table. */
  look(path: string, server?: ProcessId): Promise<MountLook>;
  /**
   * Stats a path on the mount once (its root after a Mount; a name that cannot exist for the stall watch), bounded by
   * timeoutMs, without ever blocking the caller's thread (or more than a bounded share of a thread pool): answered
   * (even with an error such as ENOENT) means FUSE's INIT is done and the server answers requests.
   */
  probe(path: string, timeoutMs: number): Promise<ProbeResult>;
  /**
   * Aborts the FUSE connection of the mount at path (/sys/fs/fuse/connections/<dev>/abort), so every request waiting
   * on it fails at once instead of waiting for a server that does not answer. False when that cannot be done here
   * (no fusectl): ending the mount's sshfs has the same effect.
   */
  abort(path: string): Promise<boolean>;
  /**
   * The mount's FUSE connection as fusectl shows it: how many requests wait for an answer now, and its abort, bound to
   * this very connection (a later mount on the path has another). undefined when fusectl is not mounted here.
   */
  fuseConnection(path: string): Promise<FuseConnection | undefined>;
  /** Mount points of sshfs mounts below a directory. */
  sshfsMountsUnder(dir: string): Promise<string[]>;
  /**
   * How many mounts of the filesystem at path exist elsewhere (containers' binds, in any mount namespace); undefined
   * when that cannot be seen (a managed plugin sees only its own processes). Optional.
   */
  usersOf?(path: string): Promise<number | undefined>;
}

/**
 * The processes the plugin started (sshfs, its ssh, the shared logins' masters), known by pid and start time: never
 * looked up by name or command line (a container can name a process anything, and reading another process's command
 * line can block on its memory lock). Only /proc/<pid>/stat is read (and, for the stall watch, sshfs's threads' stat,
 * io and syscall and its fd links): none takes such a lock.
 * A host whose processes cannot be seen has none (Deps.processes undefined): Status then says less.
 */
export interface ProcessTable {
  /** The pid with its start time now; undefined when no such process runs. */
  identify(pid: number): Promise<ProcessId | undefined>;
  /** Whether that very process still runs (same pid and start time, not a zombie). */
  alive(process: ProcessId): Promise<boolean>;
  /**
   * The newest other live process in the process group this one leads: sshfs's current ssh (sshfs starts ssh through
   * a double fork, so ssh is not its child, but stays in its group; no process outside can join that group). undefined
   * when there is none (the link dropped and sshfs has not reconnected yet).
   */
  groupMember(leader: ProcessId): Promise<ProcessId | undefined>;
  /** When it started. */
  startedAt(process: ProcessId): Date;
  /** Now, in the clock of start times (clock ticks after boot). */
  nowTicks(): number;
  /** The plugin's shared ssh connection (master) listening on controlPath, if one runs. */
  sshMaster(controlPath: string): Promise<{ startedAt: Date } | undefined>;
  /**
   * After its mount was unmounted or detached: the sshfs (and the ssh in its process group) are killed if still
   * running after a grace period. Returns at once.
   */
  retire(sshfs: ProcessId): void;
  /**
   * Bytes of the server's answers sshfs has read from its ssh so far: rchar of the threads that read them, never of
   * those that read new requests from the kernel (/dev/fuse). undefined when those threads cannot be told here (the
   * stall watch then goes by its probe alone).
   */
  answersRead(sshfs: ProcessId): Promise<number | undefined>;
  /** SIGKILL to the process group sshfs leads, now (a stalled mount being aborted). */
  endGroup(sshfs: ProcessId): Promise<void>;
}

/** The kernel read-ahead of a mount (its /sys/class/bdi entry), in KiB. */
export interface ReadAheadControl {
  /**
   * Sets it once the new mount answers. Throws when /sys cannot be written (a managed plugin without the bdi mount),
   * which costs read speed, never correctness. device: the mount's, when the caller has just seen it (deviceOf),
   * which saves a look at the mount table.
   */
  set(path: string, kb: number, device?: string): Promise<void>;
  /** The value in force now; undefined when it cannot be read. device: as for set. */
  get(path: string, device?: string): Promise<number | undefined>;
}

/** The filesystem work handlers need, kept behind an interface so handlers stay pure. */
export interface HostFs {
  ensureDir(path: string): Promise<void>;
  /** Removes a directory only if it is empty; never recurses. */
  removeEmptyDir(path: string): Promise<'removed' | 'absent' | 'not-empty'>;
  /** Writes a file readable by root only (0600), atomically; fsync'd unless durable is false (a log, not state). */
  writeSecretFile(path: string, content: string, options?: { durable?: boolean }): Promise<void>;
  removeFile(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** The end of a text file (at most maxBytes), or '' when it does not exist. */
  readText(path: string, maxBytes?: number): Promise<string>;
  /** What a path is after resolving every symlink in it; undefined when it does not exist or cannot be resolved. */
  fileInfo(path: string): Promise<FileInfo | undefined>;
  /**
   * One look at a file, without reading it: its size and a version that differs whenever its content may have changed
   * (for a real file: inode, size, modification and change times); undefined when it does not exist.
   */
  fileVersion(path: string): Promise<FileVersion | undefined>;
}

export interface FileVersion {
  size: number;
  version: string;
}

export interface FileInfo {
  /** The path with every symlink resolved. */
  realPath: string;
  isFile: boolean;
  size: number;
}

export interface VolumeStore {
  get(name: string): Promise<VolumeRecord | undefined>;
  /** Every volume, read-only and not copied (List runs on every `docker volume ls`): use get() for a copy to change. */
  list(): Promise<readonly Readonly<VolumeRecord>[]>;
  /** Inserts or replaces; resolves once the change is durable. */
  put(record: VolumeRecord): Promise<void>;
  delete(name: string): Promise<void>;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  error(message: string): void;
}

/** The plugin's settings handlers read (the adapter's own, such as the socket path, stay in adapter/config.ts). */
export interface Config {
  stateDir: string;
  /** The one directory whose files volumes may name (IdentityFile, password_file, UserKnownHostsFile). */
  keysDir: string;
  mountRoot: string;
  /** How long sshfs may take to connect and mount before Mount fails (Docker cuts managed plugins at 30 s). */
  mountTimeoutMs: number;
  /** Plugin-side directory -> the same directory on the Docker host, for paths error messages tell users to edit. */
  hostDirs?: Record<string, string>;
  /**
   * Seconds a shared ssh connection (one login reused by the mounts of a server with the same credentials) stays open
   * once no mount uses it; 0 or unset: every mount logs in by itself.
   */
  sharedConnectionIdleSeconds?: number;
}

/** Runs fn while holding the lock for key; different keys never wait for each other. */
export interface KeyedLock {
  withLock<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** Delayed work per key (a volume's idle unmount); a timer never keeps the process alive. */
export interface Timers {
  /** Runs fn after ms, replacing the key's pending timer if any. */
  set(key: string, ms: number, fn: () => void): void;
  clear(key: string): void;
}

export interface Deps {
  store: VolumeStore;
  runner: CommandRunner;
  mounts: MountTable;
  processes?: ProcessTable;
  readAhead: ReadAheadControl;
  fs: HostFs;
  config: Config;
  locks: KeyedLock;
  timers: Timers;
  now: () => Date;
  log: Logger;
  /** What handlers remember between requests (memory.ts): made once with the rest. */
  memory: Memory;
}
