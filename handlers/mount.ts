import { explainMountFailure, failureContext } from './diagnose.js';
import { describe, UserError } from './errors.js';
import { remoteText } from './options.js';
import { requireMount } from './request.js';
import { respond } from './respond.js';
import { buildSshfsArgs, type MountPaths } from './sshfs-args.js';
import type { Deps, MountResponse, VolumeRecord } from './types.js';
import { cancelIdleUnmount } from './unmount.js';
import { getVolume, knownHostsFile, mountCount, optionsOf, referenceCount, sshLogFileFor } from './volume.js';

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
      record.mounts[id] = mountCount(record, id) + 1;
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

/** Mounts the volume, or cleans up everything it started and throws a UserError that explains why not. */
export async function mountSshfs(record: VolumeRecord, deps: Deps): Promise<void> {
  const opts = optionsOf(record);
  const paths: MountPaths = {
    mountpoint: record.mountpoint,
    knownHostsFile: knownHostsFile(deps.config),
    sshLogFile: sshLogFileFor(deps.config, record.name),
    ...(record.keyFile !== undefined ? { keyFile: record.keyFile } : {}),
  };
  await deps.fs.ensureDir(record.mountpoint);
  await deps.fs.writeSecretFile(paths.sshLogFile, ''); // each mount starts a fresh ssh log
  const result = await deps.runner.run('sshfs', buildSshfsArgs(opts, paths), {
    timeoutMs: deps.config.mountTimeoutMs,
    ...(opts.password !== undefined ? { input: `${opts.password}\n` } : {}),
  });
  const mounted = await deps.mounts.isMounted(record.mountpoint);
  if (result.exitCode === 0 && !result.timedOut && mounted) {
    record.mountedAt = deps.now().toISOString();
    delete record.lastError;
    delete record.lastErrorAt;
    deps.log.info(`mounted ${remoteText(opts.remote)} for volume ${record.name} at ${record.mountpoint}`);
    await setReadAhead(record, opts.readAheadKb, deps);
    return;
  }
  // Leave nothing behind: no half-made mount, no empty mountpoint.
  if (mounted) await deps.runner.run('fusermount3', ['-u', '-z', record.mountpoint], { timeoutMs: 5_000 });
  const sshLog = await deps.fs.readText(paths.sshLogFile);
  await deps.fs.removeEmptyDir(record.mountpoint);
  const message =
    result.exitCode === 0 && !result.timedOut
      ? `sshfs reported success but ${record.mountpoint} is not mounted`
      : explainMountFailure(result, sshLog, await failureContext(record, opts, paths.knownHostsFile, deps));
  record.lastError = message;
  record.lastErrorAt = deps.now().toISOString();
  await deps.store.put(record);
  throw new UserError(message);
}
