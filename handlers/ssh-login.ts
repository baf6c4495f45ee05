// How a volume's ssh logs in. A Mount's plan (the volume's options, its login and its files, decided once) gives the
// ssh options every ssh of the Mount uses, one -o per option so none can merge into another: sshfs's own ssh
// (lifecycle.ts builds sshfs's argv), each jump host's, and a shared login's master. Values have been validated by
// options.ts; here they are only placed.
//
// Shared logins: one login reused by the mounts of a server made with the same credentials and settings.
// The plugin starts an OpenSSH master (`ssh -N -o ControlMaster=yes`) whose control socket lives in its state
// directory; sshfs's ssh joins it (ControlMaster=no) and opens its SFTP session over the logged-in connection, so a
// cold Mount skips the key exchange and the login. The socket's name is a digest of everything that decides the
// login and the session: a volume never joins a connection made with other credentials or settings, and one whose
// own credentials are wrong fails its own login. Masters close themselves after an idle period (ControlPersist),
// when the last volume that used one is removed, and when the plugin stops.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { describe } from './errors.js';
import { bareHost, jumpHostText, MAX_JUMP_HOSTS, type VolumeOptions } from './options.js';
import type { Login } from './credentials.js';
import type { Deps, RunResult, VolumeRecord } from './types.js';

export interface MountPaths {
  mountpoint: string;
  /** The known_hosts file ssh checks: the plugin's own in the state directory, or the user's (then only read). */
  knownHostsFile: string;
  /** Where ssh writes its own messages (`ssh -E`), and where sshfs's own output goes (the runner appends it there). */
  sshLogFile: string;
}

/** What one Mount starts sshfs (and ssh) with: built once, then every argv comes from it. */
export interface MountPlan {
  opts: VolumeOptions;
  login: Login;
  paths: MountPaths;
  /** The login's ssh options, unescaped: sshfs passes them on; a shared login's master and every jump host use them too. */
  sshOptions: ReadonlyArray<readonly [string, string]>;
}

export function mountPlan(opts: VolumeOptions, login: Login, paths: MountPaths): MountPlan {
  return { opts, login, paths, sshOptions: sshOptionEntries(opts, paths, login) };
}

function sshOptionEntries(opts: VolumeOptions, paths: MountPaths, login: Login): Array<[string, string]> {
  const ssh: Record<string, string> = {
    UserKnownHostsFile: paths.knownHostsFile,
    // Host keys come from that one file only; ssh must never rewrite it (UpdateHostKeys) or read the host's own.
    GlobalKnownHostsFile: '/dev/null',
    UpdateHostKeys: 'no',
    // Only the credential the volume was given: no agent, no key from root's ~/.ssh.
    IdentityAgent: 'none',
    IdentitiesOnly: 'yes',
    ...opts.ssh,
  };
  if ('keyFile' in login) {
    ssh.IdentityFile = login.keyFile;
    if (login.certificateFile !== undefined) ssh.CertificateFile = login.certificateFile;
    ssh.PasswordAuthentication = 'no';
    ssh.KbdInteractiveAuthentication = 'no';
    // Without a password nobody can answer a prompt: fail fast instead of hanging the Mount.
    ssh.BatchMode = 'yes';
  } else {
    ssh.IdentityFile = 'none';
    ssh.PubkeyAuthentication = 'no';
    ssh.PreferredAuthentications = 'password,keyboard-interactive';
    ssh.NumberOfPasswordPrompts = '1';
  }
  return Object.entries(ssh);
}

/** Where the ssh of jump host `index` (0: the first hop) writes its messages: beside the log of the ssh it serves. */
export function jumpHostLogFile(logFile: string, index: number): string {
  return `${logFile}.hop${index}`;
}

/** One word for /bin/sh, whatever it holds: single-quoted, a quote inside written as '\''. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** ssh expands %-tokens in a ProxyCommand before the shell runs it: literal text keeps its % by doubling it. */
const literalPercent = (text: string) => text.replace(/%/g, '%%');

/**
 * The ProxyCommand that reaches the server through the volume's jump hosts, or undefined without any. ssh's own
 * ProxyJump cannot be used: the ssh it starts for a hop gets none of the volume's -o options (key, known_hosts, host
 * key policy: it would use root's ~/.ssh), so the plugin builds the chain itself. Each hop is
 * `ssh -E <log> -F none -p PORT -l USER -o <the volume's ssh options> [-o ProxyCommand=<the hops before>] -W [%h]:%p -- HOST`:
 * the same key, known_hosts file and host key policy as the server's login. ssh runs a ProxyCommand with /bin/sh, so
 * every word is single-quoted (and its % doubled) here: no value, however written, can become shell syntax; the
 * values come from options.ts, which allows only names, numbers and paths there anyway.
 */
export function proxyCommand(plan: MountPlan, logFile: string): string | undefined {
  let command: string | undefined;
  for (const [index, hop] of (plan.opts.jumpHosts ?? []).entries()) {
    const argv = ['-E', jumpHostLogFile(logFile, index), '-F', 'none'];
    if (hop.port !== undefined) argv.push('-p', String(hop.port));
    if (hop.user !== undefined) argv.push('-l', hop.user);
    for (const [k, v] of plan.sshOptions) argv.push('-o', `${k}=${v}`);
    // The hops before this one, run by this hop's own ssh (which expands their %h to this hop's host).
    if (command !== undefined) argv.push('-o', `ProxyCommand=${command}`);
    argv.push('-W');
    const words = argv.map((w) => (w.startsWith('-') && /^[A-Za-z-]+$/.test(w) ? w : shellWord(literalPercent(w))));
    command = ['ssh', ...words, "'[%h]:%p'", '--', shellWord(literalPercent(bareHost(hop.host)))].join(' ');
  }
  return command;
}

// Shared logins.

/**
 * Logins kept per server and credentials. A login carries the session of one mounted volume at a time: sessions
 * multiplexed over one TCP stream and one ssh process measured slower, together, than separate logins when several
 * volumes of a server are busy at once (`npm run bench`, bench-results.md). So a Mount joins a login no mounted volume
 * uses, or opens another one (its own ssh process, as without sharing) that later Mounts reuse in turn. Beyond this
 * many mounted at once, a volume logs in by itself.
 */
const MAX_LOGINS_PER_SERVER = 16;

/**
 * Unix socket paths hold at most 107 bytes, and ssh first binds `<path>.<16 random characters>`: longer paths
 * (a very long STATE_DIR) cannot be shared, and those volumes log in by themselves.
 */
const MAX_CONTROL_PATH = 107 - 17;

export interface SharedConnection {
  /**
   * A digest of the login's credentials and settings (20 hex digits: 80 bits) and one hex digit for which of its logins;
   * also the socket's name, kept short for the 107-byte limit on socket paths.
   */
  id: string;
  controlPath: string;
  /** The master's own ssh log (`ssh -E`). */
  logFile: string;
}

function controlDir(stateDir: string): string {
  return posix.join(stateDir, 'cm');
}

/** The master's ssh log of a shared connection (its last word, e.g. keepalives unanswered, belongs in Status). */
export function sharedConnectionLogFile(stateDir: string, id: string): string {
  return connectionFor(stateDir, id).logFile;
}

function connectionFor(stateDir: string, id: string): SharedConnection {
  const dir = controlDir(stateDir);
  return { id, controlPath: posix.join(dir, id), logFile: posix.join(dir, `${id}.log`) };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The digest naming the logins a volume may share, or undefined when it logs in alone: sharing is off (idle period 0),
 * the login is by password (sshfs types it into its own ssh: a master could not be given it), the volume spreads its
 * I/O over several connections (max_conns > 1, which one ssh process would undo), or the state directory's path is
 * too long for a socket.
 */
async function sharedLoginDigest({ opts, paths, login, sshOptions }: MountPlan, deps: Deps): Promise<string | undefined> {
  const idle = deps.config.sharedConnectionIdleSeconds ?? 0;
  if (idle <= 0 || !('keyFile' in login) || Number(opts.sshfs.max_conns ?? 1) > 1) return undefined;
  // Everything that decides who logs in where and how: the options ssh gets (key file path, known_hosts file, host
  // key policy, ciphers, key exchange, compression, keepalives...), the destination, and the content of the key and
  // of a user's known_hosts file (a file replaced in the keys directory must not reuse a login made with the old one).
  const material = {
    user: opts.remote.user ?? null,
    host: opts.remote.host,
    port: opts.port ?? null,
    ssh: [...sshOptions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    key: sha256(await deps.fs.readText(login.keyFile, 64 * 1024)),
    knownHosts: opts.knownHostsFile === undefined ? null : sha256(await deps.fs.readText(paths.knownHostsFile, 1024 * 1024)),
    // The way there (every hop logs in with the options above) and the certificate's content, like the key's.
    hops: (opts.jumpHosts ?? []).map(jumpHostText),
    certificate: login.certificateFile === undefined ? null : sha256(await deps.fs.readText(login.certificateFile, 64 * 1024)),
  };
  const digest = sha256(JSON.stringify(material)).slice(0, 20);
  if (connectionFor(deps.config.stateDir, `${digest}0`).controlPath.length > MAX_CONTROL_PATH) {
    deps.log.info(`STATE_DIR ${deps.config.stateDir} is too long for ssh control sockets: every mount logs in by itself`);
    return undefined;
  }
  return digest;
}

/** Whether the master of a shared connection runs. */
async function masterRunning(shared: SharedConnection, deps: Deps): Promise<boolean> {
  // A master that ended normally took its socket with it: then no process lookup is needed. Looking the master up
  // among the plugin's processes reads a few procfs files; `ssh -O check` starts a process.
  if (!(await deps.fs.exists(shared.controlPath))) return false;
  return deps.processes !== undefined
    ? (await deps.processes.sshMaster(shared.controlPath)) !== undefined
    : (await control('check', shared.controlPath, deps)).exitCode === 0;
}

/**
 * The login of this digest the volume `name` should use: the first running one that no other mounted volume uses,
 * else the first free place for a new one; undefined when MAX_LOGINS_PER_SERVER are in use.
 */
async function pickSharedConnection(digest: string, name: string, deps: Deps): Promise<SharedConnection | undefined> {
  const taken = new Set(
    (await deps.store.list()).flatMap((r) => (r.name !== name && r.mountedAt !== undefined && r.sharedConnection !== undefined ? [r.sharedConnection] : [])),
  );
  let free: SharedConnection | undefined;
  for (let n = 0; n < MAX_LOGINS_PER_SERVER; n++) {
    const shared = connectionFor(deps.config.stateDir, `${digest}${n.toString(16)}`);
    if (taken.has(shared.id)) continue;
    if (await masterRunning(shared, deps)) return shared;
    free ??= shared;
  }
  return free;
}

/** `ssh -O <command>` to a master; ssh needs a destination argument, unused with an explicit ControlPath. */
function control(command: 'check' | 'exit' | 'stop', controlPath: string, deps: Deps): Promise<RunResult> {
  return deps.runner.run('ssh', ['-F', 'none', '-O', command, '-o', `ControlPath=${controlPath}`, 'shared-connection'], {
    timeoutMs: 5_000,
  });
}

/** The master's command line: the volume's own login options, plus the control socket and its idle period. */
export function masterArgs(shared: SharedConnection, plan: MountPlan, idleSeconds: number): string[] {
  const { opts } = plan;
  const args = ['-E', shared.logFile, '-F', 'none', '-N'];
  args.push('-o', 'ControlMaster=yes', '-o', `ControlPath=${shared.controlPath}`, '-o', `ControlPersist=${idleSeconds}`);
  if (opts.port !== undefined) args.push('-p', String(opts.port));
  for (const [k, v] of plan.sshOptions) args.push('-o', `${k}=${v}`);
  const proxy = proxyCommand(plan, shared.logFile);
  if (proxy !== undefined) args.push('-o', `ProxyCommand=${proxy}`);
  // The host was validated (options.ts: it never starts with '-'); `--` all the same. ssh takes an IPv6 address bare.
  args.push('--', `${opts.remote.user !== undefined ? `${opts.remote.user}@` : ''}${bareHost(opts.remote.host)}`);
  return args;
}

/** A master's login that failed: ssh's result and words, and each jump host's. */
export interface MasterRefused {
  ok: false;
  result: RunResult;
  log: string;
  jumpHostLogs: string[];
}

type MasterOutcome = { ok: true; started: boolean } | MasterRefused;

/** What each jump host's ssh said (in the order of the chain) when a login through them failed. */
export async function readJumpHostLogs(opts: VolumeOptions, logFile: string, deps: Deps): Promise<string[]> {
  return Promise.all((opts.jumpHosts ?? []).map((_hop, index) => deps.fs.readText(jumpHostLogFile(logFile, index), 4096)));
}

/**
 * Makes sure the shared connection's master runs: reuses a live one, else logs in anew (one at a time per connection,
 * so concurrent Mounts of the same server log in once). A failed login is the volume's own: it is returned with ssh's
 * words, and the Mount fails with them.
 */
async function ensureMaster(shared: SharedConnection, plan: MountPlan, deps: Deps): Promise<MasterOutcome> {
  const { opts } = plan;
  return deps.locks.withLock(`shared-ssh/${shared.id}`, async () => {
    if (await masterRunning(shared, deps)) return { ok: true, started: false };
    // A socket left by a master that died would make the new one run without sharing (ssh does not replace it).
    await deps.fs.removeFile(shared.controlPath);
    await deps.fs.writeSecretFile(shared.logFile, '', { durable: false }); // also creates the 0700 control directory
    for (const index of (opts.jumpHosts ?? []).keys()) await deps.fs.writeSecretFile(jumpHostLogFile(shared.logFile, index), '', { durable: false });
    const idle = deps.config.sharedConnectionIdleSeconds ?? 0;
    const result = await deps.runner.run('ssh', masterArgs(shared, plan, idle), {
      timeoutMs: deps.config.mountTimeoutMs,
      endGroupOnFailure: true,
    });
    // With ControlPersist and -N, ssh returns once logged in and leaves the master running in a session of its own.
    if (result.exitCode === 0 && !result.timedOut) {
      deps.log.info(`shared ssh connection ${shared.id} to ${opts.remote.host} opened (closes after ${idle} s unused)`);
      return { ok: true, started: true };
    }
    return { ok: false, result, log: await deps.fs.readText(shared.logFile), jumpHostLogs: await readJumpHostLogs(opts, shared.logFile, deps) };
  });
}

/** A Mount's place on a shared login: the connection, and whether this Mount opened its master. */
export interface SharedJoin {
  ok: true;
  connection: SharedConnection;
  started: boolean;
}

/**
 * The shared login a Mount joins (its master running, logged in: counted as joining until leaveSharedLogin), undefined
 * to log in alone, or the master's failed login, with ssh's words.
 */
export async function joinSharedLogin(name: string, plan: MountPlan, deps: Deps): Promise<SharedJoin | MasterRefused | undefined> {
  const digest = await sharedLoginDigest(plan, deps);
  const shared = digest === undefined ? undefined : await pickSharedConnection(digest, name, deps);
  if (shared === undefined) return undefined;
  mountsJoining(deps, shared.id, 1);
  let master: MasterOutcome;
  try {
    master = await ensureMaster(shared, plan, deps);
  } catch (error) {
    mountsJoining(deps, shared.id, -1);
    throw error;
  }
  if (master.ok) return { ok: true, connection: shared, started: master.started };
  mountsJoining(deps, shared.id, -1);
  return master;
}

/** The Mount's sshfs has mounted over the login (its volume is now recorded as mounted), or given up. */
export function leaveSharedLogin(join: SharedJoin, deps: Deps): void {
  mountsJoining(deps, join.connection.id, -1);
}

/** Mounts now starting sshfs over the shared login `id` (their volumes are not yet recorded as mounted), after CHANGE. */
function mountsJoining(deps: Deps, id: string, change: number): number {
  const map = deps.memory.joiningLogins;
  const n = (map.get(id) ?? 0) + change;
  if (n > 0) map.set(id, n);
  else map.delete(id);
  return n;
}

/**
 * A Mount failed: the login it opened (none when it joined a running one) is closed, unless another volume is mounted
 * over it or another Mount is joining it right now (otherwise each failed option set would leave a logged-in ssh for
 * the whole idle period).
 */
export async function closeLoginOpenedFor(join: SharedJoin, name: string, deps: Deps): Promise<void> {
  const shared = join.connection;
  if (!join.started || mountsJoining(deps, shared.id, 0) > 0) return;
  const users = (await deps.store.list()).filter((r) => r.name !== name && r.mountedAt !== undefined && r.sharedConnection === shared.id);
  if (users.length > 0) return;
  await closeSharedConnection(shared, deps);
  deps.log.info(`volume ${name}: closed the shared ssh connection ${shared.id} its failed Mount had opened`);
}

/** ssh's words when a master refused a session (the server's MaxSessions): the mount is tried again without it. */
export function sessionRefused(sshLog: string): boolean {
  return /session request failed|Session open refused|mux_client_request_session/i.test(sshLog);
}

/**
 * At Remove: the volume's shared connection is closed when no other volume used it. Never fails the Remove (the
 * master also closes itself after its idle period).
 */
export async function releaseSharedConnection(record: VolumeRecord, deps: Deps): Promise<void> {
  const id = record.sharedConnection;
  if (id === undefined) return;
  try {
    if ((await deps.store.list()).some((r) => r.name !== record.name && r.sharedConnection === id)) return;
    const shared = connectionFor(deps.config.stateDir, id);
    await deps.locks.withLock(`shared-ssh/${id}`, async () => {
      const exit = await control('exit', shared.controlPath, deps);
      await deps.fs.removeFile(shared.controlPath);
      await deps.fs.removeFile(shared.logFile);
      for (let index = 0; index < MAX_JUMP_HOSTS; index++) await deps.fs.removeFile(jumpHostLogFile(shared.logFile, index));
      if (exit.exitCode === 0) deps.log.info(`shared ssh connection ${id} closed: its last volume was removed`);
    });
  } catch (error) {
    deps.log.error(`shared ssh connection ${id}: could not close it (${describe(error)}); it closes itself when idle`);
  }
}

/** Closes a shared connection now (`ssh -O exit`) and removes its socket; never throws (it also closes when idle). */
async function closeSharedConnection(shared: SharedConnection, deps: Deps): Promise<void> {
  try {
    await deps.locks.withLock(`shared-ssh/${shared.id}`, async () => {
      await control('exit', shared.controlPath, deps);
      await deps.fs.removeFile(shared.controlPath);
    });
  } catch (error) {
    deps.log.error(`shared ssh connection ${shared.id}: could not close it (${describe(error)}); it closes itself when idle`);
  }
}

/**
 * When the plugin stops: every master stops taking new sessions and its socket goes; an unused one exits at once,
 * one that mounted volumes still use (their containers run on) exits with its last session.
 */
export async function stopSharedConnections(deps: Deps): Promise<void> {
  const ids = new Set((await deps.store.list()).flatMap((r) => (r.sharedConnection === undefined ? [] : [r.sharedConnection])));
  await Promise.all(
    [...ids].map(async (id) => {
      const shared = connectionFor(deps.config.stateDir, id);
      const stop = await control('stop', shared.controlPath, deps).catch(() => undefined);
      if (stop?.exitCode === 0) deps.log.info(`shared ssh connection ${id} stopped`);
    }),
  );
}

/**
 * The master of a shared connection, for Status: when it started, null when it runs no more, undefined when the
 * plugin's processes cannot be seen.
 */
export async function sharedMaster(id: string, deps: Deps): Promise<{ startedAt: Date } | null | undefined> {
  if (deps.processes === undefined) return undefined;
  const shared = connectionFor(deps.config.stateDir, id);
  // No socket, no master (it removes its socket when it ends): Get then costs no process lookup.
  return ((await deps.fs.exists(shared.controlPath)) ? await deps.processes.sshMaster(shared.controlPath) : undefined) ?? null;
}
