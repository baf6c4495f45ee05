// What `docker volume inspect` shows under Status, in one place: the volume record and a live view of it (gathered
// once per Get) go in, every Status field comes out. Never a secret.
import { lastSshMessage } from './diagnose.js';
import { isSecretOption, remoteText } from './options.js';
import { sharedConnectionLogFile, sharedMaster } from './ssh-login.js';
import type { Config, Deps, MountState, SshConnection, VolumeRecord } from './types.js';
import { optionsOrProblem, referenceCount, sshLogFileFor } from './volume.js';

/** What is read live for Status: the kernel's and the processes' view of the volume now. */
export interface LiveView {
  state: MountState;
  /** ssh's last word: the volume's own log, else (a mount over a shared login) its master's. */
  lastSshMessage?: string;
  /** The volume's current ssh connection; null when none runs; undefined when unknown (not mounted, or not visible). */
  ssh?: SshConnection | null;
  /** The mount's read-ahead in force now, in KiB. */
  readAheadKb?: number;
  /**
   * The master of the volume's shared login (record.sharedConnection): when it started, null when it runs no more,
   * undefined when the plugin cannot see its processes.
   */
  sharedMaster?: { startedAt: Date } | null;
}

/** Without mountedTicks (a record from before it was kept): an ssh started this long after sshfs is a reconnect. */
const FIRST_SSH_WITHIN_TICKS = 200;

/**
 * The volume's ssh connection now: the newest other process in its sshfs's process group (sshfs runs nothing but ssh),
 * null when there is none (the link dropped and sshfs has not reconnected yet), undefined when that cannot be known
 * (no sshfs on record). `reconnected`: sshfs reconnects silently, so this is how Status tells.
 */
async function sshConnectionOf(record: VolumeRecord, deps: Deps): Promise<SshConnection | null | undefined> {
  if (record.sshfs === undefined || deps.processes === undefined) return undefined;
  const ssh = await deps.processes.groupMember(record.sshfs);
  if (ssh === undefined) return null;
  // sshfs connects (its first ssh) before it mounts; any ssh started after the mount appeared is a reconnect.
  const firstBy = record.mountedTicks ?? record.sshfs.startTicks + FIRST_SSH_WITHIN_TICKS;
  return { startedAt: deps.processes.startedAt(ssh), reconnected: ssh.startTicks > firstBy };
}

/** Reads what Status needs to know of the volume now; reads nothing a Status field would not show. */
export async function readLiveView(record: VolumeRecord, deps: Deps): Promise<LiveView> {
  const state = await deps.mounts.state(record.mountpoint, record.sshfs);
  const sshLog =
    state === 'absent' && record.lastError === undefined ? '' : await deps.fs.readText(sshLogFileFor(deps.config, record.name), 4096);
  // A mount over a shared login: why that login ended (e.g. keepalives unanswered) is in its master's log.
  const masterLog =
    record.sharedConnection !== undefined && state !== 'absent'
      ? await deps.fs.readText(sharedConnectionLogFile(deps.config.stateDir, record.sharedConnection), 4096)
      : '';
  const said = lastSshMessage(sshLog) ?? lastSshMessage(masterLog);
  // sshfs reconnects silently: its current ssh process tells whether (and when) it reconnected.
  const ssh = state === 'mounted' ? await sshConnectionOf(record, deps) : undefined;
  // Read live from the kernel: what sequential reads get now, whether or not the plugin could set it.
  const readAheadKb = state === 'mounted' ? await deps.readAhead.get(record.mountpoint) : undefined;
  const master = record.sharedConnection === undefined ? undefined : await sharedMaster(record.sharedConnection, deps);
  return {
    state,
    ...(said !== undefined ? { lastSshMessage: said } : {}),
    ...(ssh !== undefined ? { ssh } : {}),
    ...(readAheadKb !== undefined ? { readAheadKb } : {}),
    ...(master !== undefined ? { sharedMaster: master } : {}),
  };
}

function authOf(record: VolumeRecord, config: Config): string {
  const o = record.options;
  if (o.password !== undefined) return 'password';
  if (o.password_file !== undefined) return `password_file ${o.password_file}`;
  if (o.key !== undefined) return 'key';
  if (o.IdentityFile !== undefined) return `IdentityFile ${o.IdentityFile}`;
  return `default key in ${config.keysDir}`;
}

function connectionOf(record: VolumeRecord, live: LiveView): Record<string, unknown> {
  const { ssh } = live;
  const seen =
    live.state !== 'mounted' || ssh === undefined
      ? {}
      : ssh === null
        ? { connection: 'down: the ssh connection dropped; sshfs reconnects at the next access to the volume' }
        : ssh.reconnected
          ? { connection: 'reconnected', reconnectedAt: ssh.startedAt.toISOString() }
          : { connection: 'up' };
  if (record.stalledAt === undefined) return seen;
  return {
    ...seen,
    connection:
      `stalled: requests waited ${record.stalledAfterSeconds ?? '?'} s (stall_timeout) without an answer from the server; ` +
      'the mount was aborted so they failed instead of hanging; the next Mount mounts afresh',
  };
}

function sharedConnectionOf(record: VolumeRecord, live: LiveView): Record<string, unknown> {
  const id = record.sharedConnection;
  if (id === undefined) return live.state === 'mounted' ? { sharedConnection: 'none' } : {};
  if (live.sharedMaster === undefined) return { sharedConnectionId: id };
  return live.sharedMaster === null
    ? { sharedConnection: 'closed', sharedConnectionId: id }
    : { sharedConnection: 'up', sharedConnectionId: id, sharedConnectionSince: live.sharedMaster.startedAt.toISOString() };
}

/** Every Status field, from the record and the live view: everything an operator acts on, never a secret. */
export function statusOf(record: VolumeRecord, live: LiveView, deps: Pick<Deps, 'config' | 'memory'>): Record<string, unknown> {
  const mounted = live.state === 'mounted';
  const { opts, problem } = optionsOrProblem(record, deps);
  // sshcmd is shown as `remote`; a secret option never.
  const shown = Object.fromEntries(Object.entries(record.options).filter(([k]) => k !== 'sshcmd' && !isSecretOption(k)));
  return {
    mounted,
    ...(live.state === 'stale' ? { stale: 'sshfs is no longer running for this mount; the next Mount replaces it' } : {}),
    remote: opts === undefined ? record.options.sshcmd : remoteText(opts.remote) + (opts.port !== undefined ? ` (port ${opts.port})` : ''),
    ...(problem !== undefined ? { invalid: problem } : {}),
    auth: authOf(record, deps.config),
    references: referenceCount(record),
    mountIDs: Object.keys(record.mounts).length,
    ...(record.mountedAt !== undefined && mounted ? { mountedAt: record.mountedAt } : {}),
    ...(record.idleUntil !== undefined && mounted ? { unmountsAt: record.idleUntil } : {}),
    ...(live.readAheadKb !== undefined && mounted ? { readAheadKb: live.readAheadKb } : {}),
    ...connectionOf(record, live),
    ...(Object.keys(shown).length > 0 ? { options: shown } : {}),
    ...(record.lastError !== undefined ? { lastError: record.lastError, lastErrorAt: record.lastErrorAt } : {}),
    ...(live.lastSshMessage !== undefined ? { lastSshMessage: live.lastSshMessage } : {}),
    ...sharedConnectionOf(record, live),
    ...(record.stalledAt !== undefined ? { stalledAt: record.stalledAt } : {}),
  };
}
