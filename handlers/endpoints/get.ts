import { lastSshMessage } from '../diagnose.js';
import { sshConnectionOf } from '../lifecycle.js';
import { sharedConnectionLogFile, sharedConnectionStatus } from '../shared-ssh.js';
import type { VolumeInfo, VolumeRequest } from '../requests.js';
import type { Deps } from '../types.js';
import { getVolume, sshLogFileFor, statusOf } from '../volume.js';

/** The volume and its Status (`docker volume inspect`): what an operator acts on, read live, never a secret. */
export async function get({ name }: VolumeRequest, deps: Deps): Promise<VolumeInfo> {
  const record = await getVolume(deps, name);
  const state = await deps.mounts.state(record.mountpoint, record.sshfs);
  const logFile = sshLogFileFor(deps.config, record.name);
  const sshLog = state === 'absent' && record.lastError === undefined ? '' : await deps.fs.readText(logFile, 4096);
  // A mount over a shared login: why that login ended (e.g. keepalives unanswered) is in its master's log.
  const masterLog =
    record.sharedConnection !== undefined && state !== 'absent'
      ? await deps.fs.readText(sharedConnectionLogFile(deps.config.stateDir, record.sharedConnection), 4096)
      : '';
  // sshfs reconnects silently: its current ssh process tells whether (and when) it reconnected.
  const ssh = state === 'mounted' ? await sshConnectionOf(record, deps) : undefined;
  // Read live from the kernel: what sequential reads get now, whether or not the plugin could set it.
  const readAheadKb = state === 'mounted' ? await deps.readAhead.get(record.mountpoint) : undefined;
  return {
    name: record.name,
    mountpoint: record.mountpoint,
    createdAt: record.createdAt,
    status: {
      ...statusOf(record, deps.config, state, lastSshMessage(sshLog) ?? lastSshMessage(masterLog), ssh, readAheadKb),
      ...(await sharedConnectionStatus(record, state === 'mounted', deps)),
      ...(record.stalledAt !== undefined
        ? {
            connection:
              `stalled: requests waited ${record.stalledAfterSeconds ?? '?'} s (stall_timeout) without an answer from the server; ` +
              'the mount was aborted so they failed instead of hanging; the next Mount mounts afresh',
            stalledAt: record.stalledAt,
          }
        : {}),
    },
  };
}
