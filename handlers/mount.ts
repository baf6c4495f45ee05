import { explainMountFailure, failureContext } from './diagnose.js';
import { describe, UserError } from './errors.js';
import { resolveKnownHosts, resolveLogin, type Login } from './credentials.js';
import { remoteText, type VolumeOptions } from './options.js';
import { requireMount } from './request.js';
import { respond } from './respond.js';
import { ensureMaster, pickSharedConnection, sessionRefused, sharedLoginDigest, type SharedConnection } from './shared-ssh.js';
import { buildSshfsArgs, type MountPaths } from './sshfs-args.js';
import type { Deps, MountResponse, VolumeRecord } from './types.js';
import { cancelIdleUnmount } from './unmount.js';
import { getVolume, knownHostsFile, mountCount, optionsOf, referenceCount, setMountCount, sshLogFileFor } from './volume.js';

export async function mount(request: unknown, deps: Deps): Promise<MountResponse> {
  return respond<MountResponse>(deps, 'Mount', { Mountpoint: '' }, async () => {
    const { name, id } = requireMount(request);
    return deps.locks.withLock(name, async () => {
      const record = await getVolume(deps, name);
      if (cancelIdleUnmount(record, deps)) deps.log.info(`volume ${name}: in use again before its delayed unmount`);
      const state = await deps.mounts.state(record.mountpoint);
      if (state === 'stale') {
        // sshfs is gone but its mount remains ("Transport endpoint is not connected"): detach it and mount afresh.
        deps.log.info(`volume ${name}: mount at ${record.mountpoint} lost its sshfs process; mounting again`);
        await deps.runner.run('fusermount3', ['-u', '-z', record.mountpoint], { timeoutMs: 10_000 });
      }
      if (state !== 'mounted') {
        if (referenceCount(record) > 0) {
          deps.log.info(`volume ${name} has ${referenceCount(record)} reference(s) but is not mounted: mounting again`);
        }
        await mountSshfs(record, deps);
      }
      setMountCount(record, id, mountCount(record, id) + 1);
      await deps.store.put(record);
      deps.log.debug(`volume ${name} mount ${id}: ${referenceCount(record)} reference(s)`);
      return { Mountpoint: record.mountpoint, Err: '' };
    });
  });
}

/** Read-ahead only changes speed: when it cannot be set, the mount is still good, and the log says why. */
async function setReadAhead(record: VolumeRecord, kb: number, deps: Deps): Promise<void> {
  try {
    await deps.mounts.setReadAhead(record.mountpoint, kb);
  } catch (error) {
    deps.log.info(`volume ${record.name}: read_ahead_kb=${kb} not set, sequential reads will be slower (${describe(error)})`);
  }
}

/** Records why the volume could not mount (Status shows it) and throws it for the Mount's Err. */
async function failMount(record: VolumeRecord, message: string, deps: Deps): Promise<never> {
  record.lastError = message;
  record.lastErrorAt = deps.now().toISOString();
  await deps.store.put(record);
  throw new UserError(message);
}

/** Mounts the volume, or cleans up everything it started and throws a UserError that explains why not. */
export async function mountSshfs(record: VolumeRecord, deps: Deps): Promise<void> {
  let opts: VolumeOptions;
  let login: Login;
  let knownHosts: string;
  try {
    opts = optionsOf(record, deps.config);
    login = await resolveLogin(opts, record.keyFile, deps);
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
  const shared = await sharedLogin(record, opts, paths, login, deps);
  const runSshfs = (controlPath?: string) =>
    deps.runner.run('sshfs', buildSshfsArgs(opts, paths, login, controlPath), {
      timeoutMs: deps.config.mountTimeoutMs,
      // A failed or timed-out sshfs takes its ssh (and anything else it started) with it.
      endGroupOnFailure: true,
      ...('password' in login ? { input: `${login.password}\n` } : {}),
    });
  let result = await runSshfs(shared?.controlPath);
  let usedShared = shared;
  if (shared !== undefined && result.exitCode !== 0 && !result.timedOut && sessionRefused(await deps.fs.readText(paths.sshLogFile))) {
    // The server allows fewer sessions per connection than we counted on: this volume logs in by itself.
    deps.log.info(`volume ${record.name}: the shared ssh connection was refused a session; logging in separately`);
    await deps.fs.writeSecretFile(paths.sshLogFile, '', { durable: false });
    result = await runSshfs();
    usedShared = undefined;
  }
  const mounted = await deps.mounts.isMounted(record.mountpoint);
  if (result.exitCode === 0 && !result.timedOut && mounted) {
    record.mountedAt = deps.now().toISOString();
    if (usedShared !== undefined) record.sharedConnection = usedShared.id;
    else delete record.sharedConnection;
    delete record.lastError;
    delete record.lastErrorAt;
    deps.log.info(`mounted ${remoteText(opts.remote)} for volume ${record.name} at ${record.mountpoint}`);
    // Not awaited: it waits for the new mount's first answer (in a child process), which the Mount need not pay for.
    void setReadAhead(record, opts.readAheadKb, deps);
    return;
  }
  // Leave nothing behind: no half-made mount, no empty mountpoint.
  if (mounted) await deps.runner.run('fusermount3', ['-u', '-z', record.mountpoint], { timeoutMs: 5_000 });
  const sshLog = await deps.fs.readText(paths.sshLogFile);
  await deps.fs.removeEmptyDir(record.mountpoint);
  const message =
    result.exitCode === 0 && !result.timedOut
      ? `sshfs reported success but ${record.mountpoint} is not mounted`
      : explainMountFailure(result, sshLog, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps));
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
    explainMountFailure(master.result, master.log, await failureContext(opts, 'keyFile' in login ? login.keyFile : undefined, paths.knownHostsFile, deps)),
    deps,
  );
}
