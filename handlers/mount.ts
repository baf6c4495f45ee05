import { explainMountFailure } from './diagnose.js';
import { UserError } from './errors.js';
import { remoteText } from './options.js';
import { requireMount } from './request.js';
import { respond } from './respond.js';
import { buildDiagnosticSshArgs, buildSshfsArgs, type MountPaths } from './sshfs-args.js';
import type { Deps, MountResponse, VolumeRecord } from './types.js';
import { getVolume, knownHostsFile, optionsOf, referenceCount } from './volume.js';

/** The ssh diagnostic only runs after a failure; it must keep the whole Mount inside Docker's 30 s. */
const DIAGNOSTIC_TIMEOUT_MS = 5_000;

export async function mount(request: unknown, deps: Deps): Promise<MountResponse> {
  return respond<MountResponse>(deps, 'Mount', { Mountpoint: '' }, async () => {
    const { name, id } = requireMount(request);
    return deps.locks.withLock(name, async () => {
      const record = await getVolume(deps, name);
      if (!(await deps.mounts.isMounted(record.mountpoint))) {
        if (referenceCount(record) > 0) {
          deps.log.info(`volume ${name} has ${referenceCount(record)} reference(s) but is not mounted: mounting again`);
        }
        await mountSshfs(record, deps);
      }
      record.mounts[id] = (record.mounts[id] ?? 0) + 1;
      await deps.store.put(record);
      deps.log.debug(`volume ${name} mount ${id}: ${referenceCount(record)} reference(s)`);
      return { Mountpoint: record.mountpoint, Err: '' };
    });
  });
}

/** Mounts the volume, or cleans up everything it started and throws a UserError that explains why not. */
export async function mountSshfs(record: VolumeRecord, deps: Deps): Promise<void> {
  const opts = optionsOf(record);
  const paths: MountPaths = {
    mountpoint: record.mountpoint,
    knownHostsFile: knownHostsFile(deps.config),
    ...(record.keyFile !== undefined ? { keyFile: record.keyFile } : {}),
  };
  await deps.fs.ensureDir(record.mountpoint);
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
    return;
  }
  // Leave nothing behind: no half-made mount, no empty mountpoint.
  if (mounted) await deps.runner.run('fusermount3', ['-u', '-z', record.mountpoint], { timeoutMs: 5_000 });
  const diagnostic =
    result.timedOut || result.exitCode === 0
      ? undefined
      : await deps.runner.run('ssh', buildDiagnosticSshArgs(opts, paths), { input: '', timeoutMs: DIAGNOSTIC_TIMEOUT_MS });
  await deps.fs.removeEmptyDir(record.mountpoint);
  const message =
    result.exitCode === 0 && !result.timedOut
      ? `sshfs reported success but ${record.mountpoint} is not mounted`
      : explainMountFailure(result, diagnostic, {
          remote: remoteText(opts.remote),
          knownHostsFile: paths.knownHostsFile,
          timeoutSeconds: Math.round(deps.config.mountTimeoutMs / 1000),
        });
  record.lastError = message;
  record.lastErrorAt = deps.now().toISOString();
  await deps.store.put(record);
  throw new UserError(message);
}
