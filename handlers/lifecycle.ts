// The life of a volume's sshfs mount, in one place: mounting (sshfs's argv, with a shared login when one fits),
// detaching, read-ahead, the delayed unmount of an idle volume, and the timer that says where a Mount's time goes.
// Endpoints and start-up recovery call these; the caller holds the volume's lock and owns the record.
import { explainLoginFailure, explainMountFailure, failureContext, lastSshMessage } from './diagnose.js';
import { describe, UserError } from './errors.js';
import { resolveKnownHosts, resolveLogin, withCertificate } from './credentials.js';
import { remoteText } from './options.js';
import {
  closeLoginOpenedFor,
  joinSharedLogin,
  jumpHostLogFile,
  leaveSharedLogin,
  mountPlan,
  proxyCommand,
  readJumpHostLogs,
  sessionRefused,
  type MountPaths,
  type MountPlan,
  type SharedJoin,
} from './ssh-login.js';
import type { Deps, Logger, ProcessId, RunResult, StartedProcess, VolumeRecord } from './types.js';
import { knownHostsFile, optionsOf, referenceCount, sshLogFileFor } from './volume.js';

// Where a Mount's time goes: one debug line per Mount, e.g. "volume v mount steps: lock 0.1 ms, store 0.3, state 0.2,
// prepare 0.9, shared-login 2.1, sshfs 85.0, check 1.2, read-ahead 0.4, journal 1.0, total 90.8". The bench reads these lines from the
// plugin's output (DEBUG=1) to print the breakdown beside rclone's cold run. A step costs one clock read.
// The Mount hands its steps to ensureMounted, which marks its own; an Unmount is timed the same way
// ("volume v unmount steps: ..."): `docker run --rm` waits for it too.

/** Milliseconds from a monotonic clock. */
export type Clock = () => number;

export interface MountSteps {
  /** Ends the step running since the previous mark (or the start) and names it. */
  mark(step: string): void;
  /** Logs the line at debug level (with the total) and returns it. */
  done(): string;
}

const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

/** Starts timing a Mount (or an Unmount) of the volume `name`. */
export function startMountSteps(name: string, log: Logger, clock: Clock = () => performance.now(), request: 'mount' | 'unmount' = 'mount'): MountSteps {
  const started = clock();
  let last = started;
  const steps: Array<[string, number]> = [];
  return {
    mark(step) {
      const now = clock();
      steps.push([step, now - last]);
      last = now;
    },
    done() {
      const parts = steps.map(([step, took], i) => `${step} ${ms(took)}${i === 0 ? ' ms' : ''}`);
      const line = `volume ${name} ${request} steps: ${[...parts, `total ${ms(last - started)}`].join(', ')}`;
      log.debug(line);
      return line;
    },
  };
}

/** A Mount's step timer, as lifecycle marks it; nothing is timed without one. */
type StepMarks = Pick<MountSteps, 'mark'>;
const UNTIMED: StepMarks = { mark: () => undefined };

/**
 * Detaches a mount lazily (`fusermount3 -u -z`): it leaves the tree at once, and whoever still has it open (a busy
 * container, a request hung on a dead server) keeps it until they let go. Never touches the files in it.
 */
export async function detach(mountpoint: string, deps: Deps, timeoutMs = 10_000): Promise<void> {
  await deps.runner.run('fusermount3', ['-u', '-z', mountpoint], { timeoutMs });
}

/**
 * Makes sure the volume is mounted (for a Mount): a mount whose sshfs died ("Transport endpoint is not connected") is
 * detached and mounted afresh; a live one is kept. steps: the Mount's timer, which marks each step taken here.
 */
export async function ensureMounted(record: VolumeRecord, deps: Deps, steps: StepMarks = UNTIMED): Promise<void> {
  const state = await deps.mounts.state(record.mountpoint, record.sshfs);
  steps.mark('state');
  if (state === 'mounted') return;
  if (state === 'stale') {
    deps.log.info(`volume ${record.name}: mount at ${record.mountpoint} lost its sshfs process; mounting again`);
    await detach(record.mountpoint, deps);
    if (record.sshfs !== undefined) deps.processes?.retire(record.sshfs); // an ssh left in its group
  }
  if (referenceCount(record) > 0) {
    deps.log.info(`volume ${record.name} has ${referenceCount(record)} reference(s) but is not mounted: mounting again`);
  }
  await mountVolume(record, deps, steps);
}

/** Records why the volume could not be mounted or unmounted (Status shows it) and throws it for the request's Err. */
async function recordFailure(record: VolumeRecord, message: string, deps: Deps): Promise<never> {
  record.lastError = message;
  record.lastErrorAt = deps.now().toISOString();
  await deps.store.put(record);
  throw new UserError(message);
}

/**
 * How long a Mount waits between looks at the mount table while sshfs connects: a look reads /proc/self/mountinfo
 * (a fraction of a millisecond), and every ms between the mount appearing and the look is added to `docker run`; a
 * shared login mounts in a few ms, a new one in a few hundred. The first look comes after the first wait: sshfs just
 * started cannot have mounted yet (it has to reach its ssh and the server's SFTP first).
 */
const MOUNT_POLL_MS = [1, 2, 3, 5];
const MOUNT_POLL_MAX_MS = 10;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What one sshfs start came to: its mount is up (and answers), or why not. */
type SshfsOutcome =
  | { ok: true; sshfs: StartedProcess; device: string }
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
  steps: StepMarks,
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
  let device: string | undefined;
  for (let i = 0; ; i++) {
    const left = deadline - Date.now();
    // Its group is ended all the same by the caller (an ssh it started may linger).
    if (exitCode !== undefined) return { ok: false, result: failed('', false, exitCode ?? -1), sshfs, mountAppeared: false };
    if (left <= 0) return { ok: false, result: failed('', true), sshfs, mountAppeared: false };
    await Promise.race([sleep(Math.min(MOUNT_POLL_MS[i] ?? MOUNT_POLL_MAX_MS, left)), sshfs.exited]);
    device = await deps.mounts.deviceOf(paths.mountpoint);
    if (device !== undefined) break;
  }
  steps.mark('sshfs');
  // At least a moment for the first answer, even when connecting took nearly the whole timeout.
  const probe = await deps.mounts.probe(paths.mountpoint, Math.max(deadline - Date.now(), 500));
  steps.mark('check');
  if (probe.ok) return { ok: true, sshfs, device };
  // sshfs mounts before its first look at the remote directory (and, with a password, before the login is through):
  // one that exits then (a missing directory, a refused password) took its mount's connection with it, and said why
  // in its log: that is the message.
  const serverGone = probe.error === 'ENOTCONN' || probe.error === 'ECONNABORTED';
  if (serverGone) await Promise.race([sshfs.exited, sleep(1_000)]);
  const said = exitCode !== undefined || probe.timedOut || serverGone ? '' : `the new mount did not answer (${probe.error ?? 'no reply'})`;
  return { ok: false, result: failed(said, false, exitCode ?? -1), sshfs, mountAppeared: true, unanswered: probe.timedOut };
}

/**
 * The ssh command sshfs runs, set by the plugin only (users cannot pass ssh_command). `-F none`: no ssh_config of the
 * host or of root applies, so nothing there (a ProxyCommand, an IdentityFile, an agent) reaches a volume.
 */
function sshCommand(sshLogFile: string): string {
  return `ssh -E ${sshLogFile} -F none`;
}

/** FUSE splits -o on commas; a backslash keeps one inside a value (e.g. a list of authentication methods). */
function escapeFuse(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/**
 * sshfs's argv. controlPath: the shared connection to use (ssh-login.ts). ControlMaster=no: sshfs's ssh only ever joins the
 * plugin's master; when that is gone, ssh finds no socket and logs in by itself, as without sharing.
 */
export function buildSshfsArgs(plan: MountPlan, controlPath?: string): string[] {
  const { opts, paths, login } = plan;
  // -f: sshfs stays the plugin's own child (no daemon to look for), its pid known from the start.
  const args = [remoteText(opts.remote), paths.mountpoint, '-f'];
  if (opts.port !== undefined) args.push('-p', String(opts.port));
  for (const [k, v] of Object.entries(opts.sshfs)) args.push('-o', v === '' ? k : `${k}=${v}`);
  if ('password' in login) args.push('-o', 'password_stdin');
  args.push('-o', `ssh_command=${sshCommand(paths.sshLogFile)}`);
  for (const [k, v] of plan.sshOptions) args.push('-o', `${k}=${escapeFuse(v)}`);
  const proxy = proxyCommand(plan, paths.sshLogFile);
  if (proxy !== undefined) args.push('-o', `ProxyCommand=${escapeFuse(proxy)}`);
  if (controlPath !== undefined) args.push('-o', `ControlPath=${controlPath}`, '-o', 'ControlMaster=no');
  return args;
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

/** What the volume's Mount starts sshfs with: its options, its login and its files, each checked now. */
async function planMount(record: VolumeRecord, deps: Deps): Promise<MountPlan> {
  const opts = optionsOf(record, deps);
  const login = await withCertificate(opts, await resolveLogin(opts, record.keyFile, deps), deps);
  const paths: MountPaths = {
    mountpoint: record.mountpoint,
    knownHostsFile: await resolveKnownHosts(opts, knownHostsFile(deps.config), deps),
    sshLogFile: sshLogFileFor(deps.config, record.name),
  };
  return mountPlan(opts, login, paths);
}

/** What the hints of a failed login or mount need to know of the plan. */
function contextOf({ opts, login, paths }: MountPlan, deps: Deps, jumpHostLogs: string[]) {
  return failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps, jumpHostLogs);
}

/** Mounts the volume, or cleans up everything it started and throws a UserError that explains why not. */
async function mountVolume(record: VolumeRecord, deps: Deps, steps: StepMarks = UNTIMED): Promise<void> {
  let plan: MountPlan;
  try {
    plan = await planMount(record, deps);
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    return recordFailure(record, error.message, deps);
  }
  const { opts, login, paths } = plan;
  const deadline = Date.now() + deps.config.mountTimeoutMs;
  await deps.fs.ensureDir(record.mountpoint);
  // Each mount starts a fresh log (ssh's, and sshfs's own output); a log need not survive a crash: no fsync.
  await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
  for (const index of (opts.jumpHosts ?? []).keys()) await deps.fs.writeSecretFile(jumpHostLogFile(paths.sshLogFile, index), '', { durable: false });
  steps.mark('prepare');
  const shared = await sharedLogin(record, plan, deps);
  steps.mark('shared-login');
  const input = 'password' in login ? `${login.password}\n` : undefined;
  const attempt = (controlPath?: string) =>
    startSshfs(buildSshfsArgs(plan, controlPath), paths, input, deadline, deps, steps);
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
    if (shared !== undefined) leaveSharedLogin(shared, deps);
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
    await setReadAhead(record, opts.readAheadKb, outcome.device, deps);
    steps.mark('read-ahead');
    return;
  }
  // Leave nothing behind: no half-made mount, no process, no empty mountpoint, no login this Mount opened for nothing.
  await takeDown(record.mountpoint, outcome.sshfs, deps);
  if (shared !== undefined) await closeLoginOpenedFor(shared, record.name, deps);
  const sshLog = await deps.fs.readText(paths.sshLogFile);
  await deps.fs.removeEmptyDir(record.mountpoint);
  const seconds = Math.round(deps.config.mountTimeoutMs / 1000);
  // A mount that never answered while ssh said nothing: the login went through and the SFTP server is silent. Where
  // ssh did say something (sshfs mounts before its login is through when it may reconnect later), that is the cause.
  const message = outcome.unanswered === true && lastSshMessage(sshLog) === undefined
    ? `mounting ${remoteText(opts.remote)} failed: the server accepted the login but its SFTP server does not answer ` +
      `(the first request on the mount got no reply within ${seconds} s, so the mount was aborted): ` +
      'check the server (its disk, the filesystem it serves, its sftp-server) and mount again'
    : explainMountFailure(outcome.result, sshLog, await contextOf(plan, deps, await readJumpHostLogs(opts, paths.sshLogFile, deps)));
  return recordFailure(record, message, deps);
}

/**
 * The shared ssh connection this Mount joins (its master running, logged in), or undefined to log in alone. A master
 * whose login fails fails the Mount with ssh's words, as sshfs's own login would have.
 */
async function sharedLogin(record: VolumeRecord, plan: MountPlan, deps: Deps): Promise<SharedJoin | undefined> {
  const joined = await joinSharedLogin(record.name, plan, deps);
  if (joined === undefined || joined.ok) return joined;
  await deps.fs.writeSecretFile(plan.paths.sshLogFile, joined.log); // Status shows ssh's last word, as for sshfs's own login
  await deps.fs.removeEmptyDir(record.mountpoint);
  return recordFailure(record, explainLoginFailure(joined.result, joined.log, await contextOf(plan, deps, joined.jumpHostLogs)), deps);
}

/** Read-ahead only changes speed: when it cannot be set, the mount is still good, and the log says why. */
async function setReadAhead(record: VolumeRecord, kb: number, device: string, deps: Deps): Promise<void> {
  try {
    await deps.readAhead.set(record.mountpoint, kb, device);
  } catch (error) {
    deps.log.info(`volume ${record.name}: read_ahead_kb=${kb} not set, sequential reads will be slower (${describe(error)})`);
  }
}

/**
 * Unmounts (lazily if busy) and removes the then-empty mountpoint directory; never deletes files. server: the sshfs
 * that served the mount (the record's, unless the caller already cleared it from the record); steps: an Unmount's timer.
 */
export async function unmountVolume(record: VolumeRecord, deps: Deps, server = record.sshfs, steps: StepMarks = UNTIMED): Promise<void> {
  const mounted = await deps.mounts.isMounted(record.mountpoint);
  steps.mark('state');
  if (mounted) {
    const plain = await deps.runner.run('fusermount3', ['-u', record.mountpoint], { timeoutMs: 10_000 });
    steps.mark('fusermount');
    const lazy = plain.exitCode !== 0;
    if (lazy) {
      deps.log.info(`unmount of ${record.mountpoint} failed (${plain.stderr.trim()}); detaching it lazily`);
      await detach(record.mountpoint, deps);
    }
    if (await deps.mounts.isMounted(record.mountpoint)) {
      const message = `could not unmount ${record.mountpoint}: ${plain.stderr.trim() || 'fusermount3 failed'}`;
      return recordFailure(record, message, deps);
    }
    // sshfs and its ssh normally exit once unmounted; against a server that stopped answering they can wait forever
    // (on a hung request that held the mount, or on sshfs's own last requests): make sure they end.
    if (server !== undefined) deps.processes?.retire(server);
    deps.log.info(`unmounted volume ${record.name}${lazy ? ' (detached lazily: it was busy)' : ''}`);
    steps.mark('unmounted');
  }
  await deps.fs.removeEmptyDir(record.mountpoint);
  steps.mark('rmdir');
}

/** The volume is no longer used: saved as unmounted first (a crash then leaves no claim on the mount), then unmounted. */
export async function unmountUnused(record: VolumeRecord, deps: Deps, steps: StepMarks = UNTIMED): Promise<void> {
  const server = await releaseMount(record, deps, steps);
  await unmountVolume(record, deps, server, steps);
}

/**
 * Saves the volume as no longer mounted (fsync'd: a crash after this leaves no claim on the mount, and start-up
 * unmounts what is left) and returns the sshfs that served it, for the detach that follows.
 */
export async function releaseMount(record: VolumeRecord, deps: Deps, steps: StepMarks = UNTIMED): Promise<ProcessId | undefined> {
  const server = record.sshfs;
  delete record.mountedAt;
  delete record.idleUntil;
  delete record.sshfs;
  delete record.mountedTicks;
  await deps.store.put(record);
  steps.mark('journal');
  return server;
}

/**
 * The detach of a mount released by releaseMount, for an Unmount answered before it (the caller still holds the
 * volume's lock): known at once to a Get that comes meanwhile (detachSettled waits for it, so Status never shows a
 * volume half way), started once the answer is out (starting fusermount3 forks this process, which would hold the
 * answer back). Never rejects: nobody waits for it but the lock; a failure is kept in Status (lastError) and logged.
 */
export function detachReleased(record: VolumeRecord, server: ProcessId | undefined, deps: Deps, steps: StepMarks = UNTIMED): Promise<void> {
  const detaching = (async () => {
    await new Promise((resolve) => setImmediate(resolve));
    await unmountVolume(record, deps, server, steps);
  })().catch((error: unknown) => {
    deps.log.error(`volume ${record.name}: unmount after the last container let go failed: ${describe(error)}`);
  });
  deps.memory.detaching.set(record.name, detaching);
  return detaching.finally(() => {
    if (deps.memory.detaching.get(record.name) === detaching) deps.memory.detaching.delete(record.name);
  });
}

/** Waits (bounded) for every detach in progress: a stopping plugin lets them finish rather than cut fusermount3 off. */
export async function detachesSettled(deps: Deps, waitMs: number): Promise<number> {
  await waitAtMost(Promise.all(deps.memory.detaching.values()), waitMs);
  return deps.memory.detaching.size;
}

/** How long a Get waits for a detach in progress before it shows the volume as it is (a hung server's detach). */
const DETACH_WAIT_MS = 2_000;

/** Waits (bounded) for the volume's detach in progress, if any, so a Get right after an Unmount sees it done. */
export async function detachSettled(name: string, deps: Deps, waitMs = DETACH_WAIT_MS): Promise<void> {
  const detaching = deps.memory.detaching.get(name);
  if (detaching !== undefined) await waitAtMost(detaching, waitMs);
}

/** Waits for `work` (which never rejects), but no longer than ms; the timer is cleared either way. */
async function waitAtMost(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
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
