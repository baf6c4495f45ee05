// The life of a volume's sshfs mount, in one place: mounting (with a shared login when one fits), detaching,
// read-ahead, and the delayed unmount of an idle volume. Endpoints and start-up recovery call these; the caller holds
// the volume's lock and owns the record.
import { explainLoginFailure, explainMountFailure, failureContext } from './diagnose.js';
import { describe, UserError } from './errors.js';
import { resolveKnownHosts, resolveLogin, withCertificate, type Login } from './credentials.js';
import { remoteText, type VolumeOptions } from './options.js';
import { ensureMaster, pickSharedConnection, readJumpHostLogs, sessionRefused, sharedLoginDigest, type SharedConnection } from './shared-ssh.js';
import { buildSshfsArgs, jumpHostLogFile, type MountPaths } from './sshfs-args.js';
import type { Deps, VolumeRecord } from './types.js';
import { markStep, timeStep } from './mount-steps.js';
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
  const state = await deps.mounts.state(record.mountpoint);
  markStep(record, 'state');
  if (state === 'mounted') return;
  if (state === 'stale') {
    deps.log.info(`volume ${record.name}: mount at ${record.mountpoint} lost its sshfs process; mounting again`);
    await detach(record.mountpoint, deps);
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
  const paths: MountPaths = {
    mountpoint: record.mountpoint,
    knownHostsFile: knownHosts,
    sshLogFile: sshLogFileFor(deps.config, record.name),
  };
  await deps.fs.ensureDir(record.mountpoint);
  // Each mount starts a fresh ssh log; a log need not survive a crash, so no fsync on the Mount's path.
  await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
  for (const index of (opts.jumpHosts ?? []).keys()) await deps.fs.writeSecretFile(jumpHostLogFile(paths.sshLogFile, index), '', { durable: false });
  markStep(record, 'prepare');
  const shared = await sharedLogin(record, opts, paths, login, deps);
  markStep(record, 'shared-login');
  const runSshfs = (controlPath?: string) =>
    deps.runner.run('sshfs', buildSshfsArgs(opts, paths, login, controlPath), {
      timeoutMs: deps.config.mountTimeoutMs,
      // A failed or timed-out sshfs takes its ssh (and anything else it started) with it.
      endGroupOnFailure: true,
      ...('password' in login ? { input: `${login.password}\n` } : {}),
    });
  let result = await runSshfs(shared?.controlPath);
  markStep(record, 'sshfs');
  let usedShared = shared;
  if (shared !== undefined && result.exitCode !== 0 && !result.timedOut && sessionRefused(await deps.fs.readText(paths.sshLogFile))) {
    // The server allows fewer sessions per connection than we counted on: this volume logs in by itself.
    deps.log.info(`volume ${record.name}: the shared ssh connection was refused a session; logging in separately`);
    await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
    result = await runSshfs();
    usedShared = undefined;
  }
  const mounted = await deps.mounts.isMounted(record.mountpoint);
  markStep(record, 'check');
  if (result.exitCode === 0 && !result.timedOut && mounted) {
    record.mountedAt = deps.now().toISOString();
    if (usedShared !== undefined) record.sharedConnection = usedShared.id;
    else delete record.sharedConnection;
    delete record.lastError;
    delete record.lastErrorAt;
    deps.log.info(`mounted ${remoteText(opts.remote)} for volume ${record.name} at ${record.mountpoint}`);
    // Not awaited: it waits for the new mount's first answer (in a child process), which the Mount need not pay for.
    void timeStep(record, 'read-ahead', () => setReadAhead(record, opts.readAheadKb, deps), deps.log);
    return;
  }
  // Leave nothing behind: no half-made mount, no empty mountpoint.
  if (mounted) await detach(record.mountpoint, deps, 5_000);
  const sshLog = await deps.fs.readText(paths.sshLogFile);
  await deps.fs.removeEmptyDir(record.mountpoint);
  const message =
    result.exitCode === 0 && !result.timedOut
      ? `sshfs reported success but ${record.mountpoint} is not mounted`
      : explainMountFailure(result, sshLog, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps, await readJumpHostLogs(opts, paths.sshLogFile, deps)));
  return failMount(record, message, deps);
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
): Promise<SharedConnection | undefined> {
  const digest = await sharedLoginDigest(opts, paths, login, deps);
  const shared = digest === undefined ? undefined : await pickSharedConnection(digest, record.name, deps);
  if (shared === undefined) return undefined;
  const master = await ensureMaster(shared, opts, paths, login, deps);
  if (master.ok) return shared;
  await deps.fs.writeSecretFile(paths.sshLogFile, master.log); // Status shows ssh's last word, as for sshfs's own login
  await deps.fs.removeEmptyDir(record.mountpoint);
  return failMount(
    record,
    explainLoginFailure(master.result, master.log, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps, master.jumpHostLogs)),
    deps,
  );
}

/** Read-ahead only changes speed: when it cannot be set, the mount is still good, and the log says why. */
async function setReadAhead(record: VolumeRecord, kb: number, deps: Deps): Promise<void> {
  try {
    await deps.readAhead.set(record.mountpoint, kb);
  } catch (error) {
    deps.log.info(`volume ${record.name}: read_ahead_kb=${kb} not set, sequential reads will be slower (${describe(error)})`);
  }
}

/** Unmounts (lazily if busy) and removes the then-empty mountpoint directory; never deletes files. */
export async function unmountVolume(record: VolumeRecord, deps: Deps): Promise<void> {
  if (await deps.mounts.isMounted(record.mountpoint)) {
    const plain = await deps.runner.run('fusermount3', ['-u', record.mountpoint], { timeoutMs: 10_000 });
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
    await deps.processes?.retire(record.mountpoint, sshLogFileFor(deps.config, record.name));
    deps.log.info(`unmounted volume ${record.name}${lazy ? ' (detached lazily: it was busy)' : ''}`);
  }
  await deps.fs.removeEmptyDir(record.mountpoint);
}

/** The volume is no longer used: saved as unmounted first (a crash then leaves no claim on the mount), then unmounted. */
export async function unmountUnused(record: VolumeRecord, deps: Deps): Promise<void> {
  delete record.mountedAt;
  delete record.idleUntil;
  await deps.store.put(record);
  await unmountVolume(record, deps);
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
