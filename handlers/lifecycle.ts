// The life of a volume's sshfs mount, in one place: mounting (with a shared login when one fits), detaching,
// read-ahead, and the delayed unmount of an idle volume. Endpoints and start-up recovery call these; the caller holds
// the volume's lock and owns the record.
import { explainLoginFailure, explainMountFailure, failureContext, lastSshMessage } from './diagnose.js';
import { describe, UserError } from './errors.js';
import { resolveKnownHosts, resolveLogin, withCertificate, type Login } from './credentials.js';
import { remoteText, type VolumeOptions } from './options.js';
import { closeSharedConnection, ensureMaster, pickSharedConnection, readJumpHostLogs, sessionRefused, sharedLoginDigest, type SharedConnection } from './shared-ssh.js';
import { buildSshfsArgs, jumpHostLogFile, type MountPaths } from './sshfs-args.js';
import type { Deps, RunResult, SshConnection, StartedProcess, VolumeRecord } from './types.js';
import { markStep } from './mount-steps.js';
import { knownHostsFile, optionsOf, referenceCount, sshLogFileFor } from './volume.js';

/**
 * Detaches a mount lazily (`fusermount3 -u -z`): it leaves the tree at once, and whoever still has it open (a busy
 * container, a request hung on a dead server) keeps it until they let go. Never touches the files in it.
 */
export async function detach(mountpoint: string, deps: Deps, timeoutMs = 10_000): Promise<void> {
  await deps.runner.run('fusermount3', ['-u', '-z', mountpoint], { timeoutMs });
}

/**
 * Makes sure the volume is mounted (for a Mount): a mount whose sshfs died ("Transport endpoint is not connected") is
 * detached and mounted afresh; a live one is kept.
 */
export async function ensureMounted(record: VolumeRecord, deps: Deps): Promise<void> {
  const state = await deps.mounts.state(record.mountpoint, record.sshfs);
  markStep(record, 'state');
  if (state === 'mounted') return;
  if (state === 'stale') {
    deps.log.info(`volume ${record.name}: mount at ${record.mountpoint} lost its sshfs process; mounting again`);
    await detach(record.mountpoint, deps);
    if (record.sshfs !== undefined) deps.processes?.retire(record.sshfs); // an ssh left in its group
  }
  if (referenceCount(record) > 0) {
    deps.log.info(`volume ${record.name} has ${referenceCount(record)} reference(s) but is not mounted: mounting again`);
  }
  await mountVolume(record, deps);
}

/** Records why the volume could not mount (Status shows it) and throws it for the Mount's Err. */
async function failMount(record: VolumeRecord, message: string, deps: Deps): Promise<never> {
  record.lastError = message;
  record.lastErrorAt = deps.now().toISOString();
  await deps.store.put(record);
  throw new UserError(message);
}

/**
 * How long a Mount waits between looks at the mount table while sshfs connects: a look reads /proc/self/mountinfo
 * (a fraction of a millisecond), and every ms between the mount appearing and the look is added to `docker run`; a
 * shared login mounts in a few ms, a new one in a few hundred.
 */
const MOUNT_POLL_MS = [1, 2, 3, 5];
const MOUNT_POLL_MAX_MS = 10;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What one sshfs start came to: its mount is up (and answers), or why not. */
type SshfsOutcome =
  | { ok: true; sshfs: StartedProcess }
  | { ok: false; result: RunResult; sshfs?: StartedProcess; mountAppeared: boolean; unanswered?: boolean };

/**
 * Starts sshfs in the foreground, as the plugin's own child (so its pid is known, never looked up), and waits until
 * its mount appears in the mount table or it exits, at most until the deadline. Then the fresh-mount check: the
 * mount's first request must be answered before the deadline (FUSE's INIT done, the server's SFTP answering). A
 * server that accepted the login and then stops answering (a hung disk or export behind it) would otherwise leave
 * every process that touches the mount, runc first, in the kernel for good.
 */
async function startSshfs(
  args: string[],
  paths: MountPaths,
  input: string | undefined,
  deadline: number,
  deps: Deps,
  mark: (step: string) => void = () => undefined,
): Promise<SshfsOutcome> {
  const failed = (stderr: string, timedOut = false, exitCode = -1): RunResult => ({ exitCode, stdout: '', stderr, timedOut });
  let sshfs: StartedProcess;
  try {
    sshfs = await deps.runner.start('sshfs', args, { outputFile: paths.sshLogFile, ...(input !== undefined ? { input } : {}) });
  } catch (error) {
    return { ok: false, result: failed(describe(error)), mountAppeared: false };
  }
  let exitCode: number | null | undefined;
  void sshfs.exited.then((code) => (exitCode = code));
  for (let i = 0; ; i++) {
    if (await deps.mounts.isMounted(paths.mountpoint)) break;
    // Its group is ended all the same by the caller (an ssh it started may linger).
    if (exitCode !== undefined) return { ok: false, result: failed('', false, exitCode ?? -1), sshfs, mountAppeared: false };
    const left = deadline - Date.now();
    if (left <= 0) return { ok: false, result: failed('', true), sshfs, mountAppeared: false };
    await Promise.race([sleep(Math.min(MOUNT_POLL_MS[i] ?? MOUNT_POLL_MAX_MS, left)), sshfs.exited]);
  }
  mark('sshfs');
  // At least a moment for the first answer, even when connecting took nearly the whole timeout.
  const probe = await deps.mounts.probe(paths.mountpoint, Math.max(deadline - Date.now(), 500));
  mark('check');
  if (probe.ok) return { ok: true, sshfs };
  // sshfs mounts before its first look at the remote directory (and, with a password, before the login is through):
  // one that exits then (a missing directory, a refused password) took its mount's connection with it, and said why
  // in its log: that is the message.
  const serverGone = probe.error === 'ENOTCONN' || probe.error === 'ECONNABORTED';
  if (serverGone) await Promise.race([sshfs.exited, sleep(1_000)]);
  const said = exitCode !== undefined || probe.timedOut || serverGone ? '' : `the new mount did not answer (${probe.error ?? 'no reply'})`;
  return { ok: false, result: failed(said, false, exitCode ?? -1), sshfs, mountAppeared: true, unanswered: probe.timedOut };
}

/**
 * A failed mount is taken down so nothing waits on it: its FUSE connection aborted (every request waiting on it fails
 * at once, the probe's included), sshfs's whole process group ended (its ssh included; this also aborts the connection
 * where fusectl is not mounted), the mount detached.
 */
async function takeDown(mountpoint: string, sshfs: StartedProcess | undefined, deps: Deps): Promise<void> {
  await deps.mounts.abort(mountpoint);
  sshfs?.endGroup();
  if (await deps.mounts.isMounted(mountpoint)) await detach(mountpoint, deps, 5_000);
}

/** Mounts the volume, or cleans up everything it started and throws a UserError that explains why not. */
export async function mountVolume(record: VolumeRecord, deps: Deps): Promise<void> {
  let opts: VolumeOptions;
  let login: Login;
  let knownHosts: string;
  try {
    opts = optionsOf(record, deps.config);
    login = await withCertificate(opts, await resolveLogin(opts, record.keyFile, deps), deps);
    knownHosts = await resolveKnownHosts(opts, knownHostsFile(deps.config), deps);
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    return failMount(record, error.message, deps);
  }
  const deadline = Date.now() + deps.config.mountTimeoutMs;
  const paths: MountPaths = {
    mountpoint: record.mountpoint,
    knownHostsFile: knownHosts,
    sshLogFile: sshLogFileFor(deps.config, record.name),
  };
  await deps.fs.ensureDir(record.mountpoint);
  // Each mount starts a fresh log (ssh's, and sshfs's own output); a log need not survive a crash: no fsync.
  await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
  for (const index of (opts.jumpHosts ?? []).keys()) await deps.fs.writeSecretFile(jumpHostLogFile(paths.sshLogFile, index), '', { durable: false });
  markStep(record, 'prepare');
  const shared = await sharedLogin(record, opts, paths, login, deps);
  markStep(record, 'shared-login');
  const input = 'password' in login ? `${login.password}\n` : undefined;
  const attempt = (controlPath?: string) =>
    startSshfs(buildSshfsArgs(opts, paths, login, controlPath), paths, input, deadline, deps, (step) => markStep(record, step));
  let outcome: SshfsOutcome;
  let usedShared = shared?.connection;
  try {
    outcome = await attempt(usedShared?.controlPath);
    if (
      usedShared !== undefined &&
      !outcome.ok &&
      !outcome.result.timedOut &&
      !outcome.mountAppeared &&
      sessionRefused(await deps.fs.readText(paths.sshLogFile))
    ) {
      outcome.sshfs?.endGroup();
      // The server allows fewer sessions per connection than we counted on: this volume logs in by itself.
      deps.log.info(`volume ${record.name}: the shared ssh connection was refused a session; logging in separately`);
      await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
      outcome = await attempt();
      usedShared = undefined;
    }
  } finally {
    if (shared !== undefined) mountsJoining(deps, shared.connection.id, -1);
  }
  if (outcome.ok) {
    record.sshfs = outcome.sshfs.id;
    const ticks = deps.processes?.nowTicks();
    if (ticks !== undefined && ticks > 0) record.mountedTicks = ticks;
    else delete record.mountedTicks;
    record.mountedAt = deps.now().toISOString();
    if (usedShared !== undefined) record.sharedConnection = usedShared.id;
    else delete record.sharedConnection;
    delete record.lastError;
    delete record.lastErrorAt;
    delete record.stalledAt;
    delete record.stalledAfterSeconds;
    deps.log.info(`mounted ${remoteText(opts.remote)} for volume ${record.name} at ${record.mountpoint}`);
    // The check above waited for the mount's first answer, so FUSE's INIT is done: the value now stays.
    await setReadAhead(record, opts.readAheadKb, deps);
    markStep(record, 'read-ahead');
    return;
  }
  // Leave nothing behind: no half-made mount, no process, no empty mountpoint, no login this Mount opened for nothing.
  await takeDown(record.mountpoint, outcome.sshfs, deps);
  if (shared?.started === true) await closeLoginIfUnused(shared.connection, record.name, deps);
  const sshLog = await deps.fs.readText(paths.sshLogFile);
  await deps.fs.removeEmptyDir(record.mountpoint);
  const seconds = Math.round(deps.config.mountTimeoutMs / 1000);
  // A mount that never answered while ssh said nothing: the login went through and the SFTP server is silent. Where
  // ssh did say something (sshfs mounts before its login is through when it may reconnect later), that is the cause.
  const message = outcome.unanswered === true && lastSshMessage(sshLog) === undefined
    ? `mounting ${remoteText(opts.remote)} failed: the server accepted the login but its SFTP server does not answer ` +
      `(the first request on the mount got no reply within ${seconds} s, so the mount was aborted): ` +
      'check the server (its disk, the filesystem it serves, its sftp-server) and mount again'
    : explainMountFailure(outcome.result, sshLog, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps, await readJumpHostLogs(opts, paths.sshLogFile, deps)));
  return failMount(record, message, deps);
}

/** Per plugin: shared logins -> Mounts now starting sshfs over them (their volumes are not yet recorded as mounted). */
const joining = new WeakMap<Deps, Map<string, number>>();

function mountsJoining(deps: Deps, id: string, change: number): number {
  let map = joining.get(deps);
  if (map === undefined) joining.set(deps, (map = new Map()));
  const n = (map.get(id) ?? 0) + change;
  if (n > 0) map.set(id, n);
  else map.delete(id);
  return n;
}

/**
 * A Mount failed after opening a shared login: the login is closed, unless another volume is mounted over it or
 * another Mount is joining it right now (otherwise each failed option set would leave a logged-in ssh for the
 * whole idle period).
 */
async function closeLoginIfUnused(shared: SharedConnection, name: string, deps: Deps): Promise<void> {
  if (mountsJoining(deps, shared.id, 0) > 0) return;
  const users = (await deps.store.list()).filter((r) => r.name !== name && r.mountedAt !== undefined && r.sharedConnection === shared.id);
  if (users.length > 0) return;
  await closeSharedConnection(shared, deps);
  deps.log.info(`volume ${name}: closed the shared ssh connection ${shared.id} its failed Mount had opened`);
}

/**
 * The shared ssh connection this Mount joins (its master running, logged in), or undefined to log in alone. A master
 * whose login fails fails the Mount with ssh's words, as sshfs's own login would have.
 */
async function sharedLogin(
  record: VolumeRecord,
  opts: VolumeOptions,
  paths: MountPaths,
  login: Login,
  deps: Deps,
): Promise<{ connection: SharedConnection; started: boolean } | undefined> {
  const digest = await sharedLoginDigest(opts, paths, login, deps);
  const shared = digest === undefined ? undefined : await pickSharedConnection(digest, record.name, deps);
  if (shared === undefined) return undefined;
  mountsJoining(deps, shared.id, 1);
  let master: Awaited<ReturnType<typeof ensureMaster>>;
  try {
    master = await ensureMaster(shared, opts, paths, login, deps);
  } catch (error) {
    mountsJoining(deps, shared.id, -1);
    throw error;
  }
  if (master.ok) return { connection: shared, started: master.started };
  mountsJoining(deps, shared.id, -1);
  await deps.fs.writeSecretFile(paths.sshLogFile, master.log); // Status shows ssh's last word, as for sshfs's own login
  await deps.fs.removeEmptyDir(record.mountpoint);
  return failMount(
    record,
    explainLoginFailure(master.result, master.log, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps, master.jumpHostLogs)),
    deps,
  );
}

/** Without mountedTicks (a record from before it was kept): an ssh started this long after sshfs is a reconnect. */
const FIRST_SSH_WITHIN_TICKS = 200;

/**
 * The volume's ssh connection now: the newest other process in its sshfs's process group (sshfs runs nothing but ssh),
 * null when there is none (the link dropped and sshfs has not reconnected yet), undefined when that cannot be known
 * (no sshfs on record). `reconnected`: sshfs reconnects silently, so this is how Status tells.
 */
export async function sshConnectionOf(record: VolumeRecord, deps: Deps): Promise<SshConnection | null | undefined> {
  if (record.sshfs === undefined || deps.processes === undefined) return undefined;
  const ssh = await deps.processes.groupMember(record.sshfs);
  if (ssh === undefined) return null;
  // sshfs connects (its first ssh) before it mounts; any ssh started after the mount appeared is a reconnect.
  const firstBy = record.mountedTicks ?? record.sshfs.startTicks + FIRST_SSH_WITHIN_TICKS;
  return { startedAt: deps.processes.startedAt(ssh), reconnected: ssh.startTicks > firstBy };
}

/** Read-ahead only changes speed: when it cannot be set, the mount is still good, and the log says why. */
async function setReadAhead(record: VolumeRecord, kb: number, deps: Deps): Promise<void> {
  try {
    await deps.readAhead.set(record.mountpoint, kb);
  } catch (error) {
    deps.log.info(`volume ${record.name}: read_ahead_kb=${kb} not set, sequential reads will be slower (${describe(error)})`);
  }
}

/**
 * Unmounts (lazily if busy) and removes the then-empty mountpoint directory; never deletes files. server: the sshfs
 * that served the mount (the record's, unless the caller already cleared it from the record).
 */
export async function unmountVolume(record: VolumeRecord, deps: Deps, server = record.sshfs): Promise<void> {
  const mounted = await deps.mounts.isMounted(record.mountpoint);
  markStep(record, 'state');
  if (mounted) {
    const plain = await deps.runner.run('fusermount3', ['-u', record.mountpoint], { timeoutMs: 10_000 });
    markStep(record, 'fusermount');
    const lazy = plain.exitCode !== 0;
    if (lazy) {
      deps.log.info(`unmount of ${record.mountpoint} failed (${plain.stderr.trim()}); detaching it lazily`);
      await detach(record.mountpoint, deps);
    }
    if (await deps.mounts.isMounted(record.mountpoint)) {
      const message = `could not unmount ${record.mountpoint}: ${plain.stderr.trim() || 'fusermount3 failed'}`;
      record.lastError = message;
      record.lastErrorAt = deps.now().toISOString();
      await deps.store.put(record);
      throw new UserError(message);
    }
    // sshfs and its ssh normally exit once unmounted; against a server that stopped answering they can wait forever
    // (on a hung request that held the mount, or on sshfs's own last requests): make sure they end.
    if (server !== undefined) deps.processes?.retire(server);
    deps.log.info(`unmounted volume ${record.name}${lazy ? ' (detached lazily: it was busy)' : ''}`);
    markStep(record, 'unmounted');
  }
  await deps.fs.removeEmptyDir(record.mountpoint);
  markStep(record, 'rmdir');
}

/** The volume is no longer used: saved as unmounted first (a crash then leaves no claim on the mount), then unmounted. */
export async function unmountUnused(record: VolumeRecord, deps: Deps): Promise<void> {
  const server = record.sshfs;
  delete record.mountedAt;
  delete record.idleUntil;
  delete record.sshfs;
  delete record.mountedTicks;
  await deps.store.put(record);
  markStep(record, 'journal');
  await unmountVolume(record, deps, server);
}

/**
 * The last container let go of a volume with unmount_delay: it stays mounted for delaySeconds (a container started
 * again soon finds it ready, no ssh handshake, warm caches), then is unmounted unless a Mount took it back.
 */
export async function unmountLater(record: VolumeRecord, delaySeconds: number, deps: Deps): Promise<void> {
  record.idleUntil = new Date(deps.now().getTime() + delaySeconds * 1000).toISOString();
  await deps.store.put(record);
  scheduleIdleUnmount(record.name, record.idleUntil, delaySeconds * 1000, deps);
  deps.log.info(`volume ${record.name}: no container uses it; unmounting at ${record.idleUntil} (unmount_delay=${delaySeconds})`);
}

/** Arms the delayed unmount of an idle volume; `idleUntil` names this arming, so only it can unmount. */
export function scheduleIdleUnmount(name: string, idleUntil: string, ms: number, deps: Deps): void {
  deps.timers.set(name, ms, () => void unmountIdle(name, idleUntil, deps));
}

/**
 * The delayed unmount: only if the volume is still idle from the same arming (a Mount in between took it back and
 * cleared idleUntil; a later Unmount armed a new one, which a timer already waiting for the lock must not pre-empt).
 * Never rejects: it runs from a timer, where a rejection would end the process.
 */
export async function unmountIdle(name: string, idleUntil: string, deps: Deps): Promise<void> {
  try {
    await deps.locks.withLock(name, async () => {
      const record = await deps.store.get(name);
      if (record === undefined || record.idleUntil !== idleUntil || referenceCount(record) > 0) return;
      await unmountUnused(record, deps);
    });
  } catch (error) {
    deps.log.error(`volume ${name}: delayed unmount failed: ${describe(error)}`);
  }
}

/** A volume kept mounted by unmount_delay that is needed again (Mount) or removed: its timer must not fire. */
export function cancelIdleUnmount(record: VolumeRecord, deps: Deps): boolean {
  if (record.idleUntil === undefined) return false;
  deps.timers.clear(record.name);
  delete record.idleUntil;
  return true;
}
