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

/** Files kept in Memory.sshLogMessages at most: one per volume and shared login, so only a runaway number is cut. */
const MAX_KEPT_LOGS = 4096;

/**
 * ssh's last word in a log file, read again only when the file changed. What is kept (Memory.sshLogMessages) cannot be
 * stale: it is answered only while the file has the very version it was read at (inode, size, modification and change
 * times, looked at on every call): ssh appends to its log (the size grows) and a Mount rewrites it (a new file renamed
 * over it: a new inode). A version seen before a change but stored with the newer text is re-read at the next call.
 * An empty or missing log says nothing and is not opened.
 */
async function lastMessageIn(path: string, deps: Deps): Promise<string | undefined> {
  const kept = deps.memory.sshLogMessages;
  const file = await deps.fs.fileVersion(path);
  if (file === undefined || file.size === 0) {
    kept.delete(path);
    return undefined;
  }
  const known = kept.get(path);
  if (known?.version === file.version) return known.message;
  const message = lastSshMessage(await deps.fs.readText(path, 4096));
  if (kept.size >= MAX_KEPT_LOGS) kept.clear();
  kept.set(path, { version: file.version, message });
  return message;
}

/** ssh's last word: the volume's own log, else (a mount over a shared login) its master's, which tells why that login ended. */
async function lastMessageOf(record: VolumeRecord, state: MountState, deps: Deps): Promise<string | undefined> {
  const ownLog = state === 'absent' && record.lastError === undefined ? undefined : sshLogFileFor(deps.config, record.name);
  const masterLog = record.sharedConnection !== undefined && state !== 'absent' ? sharedConnectionLogFile(deps.config.stateDir, record.sharedConnection) : undefined;
  const [own, master] = await Promise.all([
    ownLog === undefined ? undefined : lastMessageIn(ownLog, deps),
    masterLog === undefined ? undefined : lastMessageIn(masterLog, deps),
  ]);
  return own ?? master;
}

/**
 * Reads what Status needs to know of the volume now; reads nothing a Status field would not show. One look at the
 * mount table (the other reads depend on the state; the shared login's master does not, and its round trip to the
 * thread pool overlaps the look), then the remaining reads at once: a Get comes before and after every Mount.
 */
export async function readLiveView(record: VolumeRecord, deps: Deps): Promise<LiveView> {
  const [{ state, device }, master] = await Promise.all([
    deps.mounts.look(record.mountpoint, record.sshfs),
    record.sharedConnection === undefined ? undefined : sharedMaster(record.sharedConnection, deps),
  ]);
  const mounted = state === 'mounted';
  const [said, ssh, readAheadKb] = await Promise.all([
    lastMessageOf(record, state, deps),
    // sshfs reconnects silently: its current ssh process tells whether (and when) it reconnected.
    mounted ? sshConnectionOf(record, deps) : undefined,
    // Read live from the kernel: what sequential reads get now, whether or not the plugin could set it.
    mounted ? deps.readAhead.get(record.mountpoint, device) : undefined,
  ]);
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
