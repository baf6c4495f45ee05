// What handlers work on (the volume record) and the dependencies every handler receives, in one place; the
// protocol's own types are in protocol.ts.

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
  /** Id of the shared ssh connection (shared-ssh.ts) the volume's last mount used; unset when it logged in alone. */
  sharedConnection?: string;
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

export interface CommandRunner {
  run(program: Program, args: string[], options?: RunOptions): Promise<RunResult>;
  /** A command is likely soon (a volume exists): get ready in the background, so the first Mount does not wait. */
  prepare?(): void;
}

/**
 * What is mounted right now (the kernel's view, or a fake one). 'stale' is a mount whose sshfs process is gone:
 * every access fails with "Transport endpoint is not connected". Found without touching the mount, so a hung
 * server can never block the caller.
 */
export type MountState = 'mounted' | 'stale' | 'absent';

export interface SshConnection {
  startedAt: Date;
  reconnected: boolean;
}

/** What is mounted right now: the kernel's mount table, or a simulated one. */
export interface MountTable {
  isMounted(path: string): Promise<boolean>;
  state(path: string): Promise<MountState>;
  /** Mount points of sshfs mounts below a directory. */
  sshfsMountsUnder(dir: string): Promise<string[]>;
  /**
   * How many mounts of the filesystem at path exist elsewhere (containers' binds, in any mount namespace); undefined
   * when that cannot be seen (a managed plugin sees only its own processes). Optional.
   */
  usersOf?(path: string): Promise<number | undefined>;
}

/**
 * The sshfs and ssh processes behind the mounts, and the shared logins' masters. A host whose processes cannot be
 * seen has none (Deps.processes undefined): Status then says less, and lingering processes are not ended.
 */
export interface ProcessTable {
  /**
   * The ssh connection sshfs runs for a volume (its ssh is recognized by the `-E <sshLogFile>` argument), or undefined
   * when none runs (the link dropped and sshfs has not reconnected yet). `reconnected` is true when that ssh started
   * after the sshfs daemon did: sshfs forks its first ssh before it daemonizes, every later one is a reconnect.
   * sshfs reconnects silently and ssh logs nothing when the server end dies, so this is how Status tells.
   */
  sshConnection(sshLogFile: string): Promise<SshConnection | undefined>;
  /** The plugin's shared ssh connection (master) listening on controlPath, if one runs. */
  sshMaster(controlPath: string): Promise<{ startedAt: Date } | undefined>;
  /**
   * After path was unmounted or detached: the sshfs that served it and the ssh writing to sshLogFile, as they are now,
   * are killed if still running after a grace period. Returns at once.
   */
  retire(path: string, sshLogFile: string): Promise<void>;
}

/** The kernel read-ahead of a mount (its /sys/class/bdi entry), in KiB. */
export interface ReadAheadControl {
  /**
   * Sets it once the new mount answers. Throws when /sys cannot be written (a managed plugin without the bdi mount),
   * which costs read speed, never correctness.
   */
  set(path: string, kb: number): Promise<void>;
  /** The value in force now; undefined when it cannot be read. */
  get(path: string): Promise<number | undefined>;
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
}
