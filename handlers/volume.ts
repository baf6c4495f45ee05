// Shared per-volume helpers: where things live, how a record maps back to mount options, its references.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { NoSuchVolume, UserError } from './errors.js';
import { parseOptions, type VolumeOptions } from './options.js';
import type { Config, Deps, VolumeRecord } from './types.js';

export function mountpointFor(config: Config, name: string): string {
  // From the volume name, never from sshcmd: two volumes on one remote path must not share a mountpoint.
  return posix.join(config.mountRoot, name);
}

export function keyFileFor(config: Config, name: string): string {
  return posix.join(config.stateDir, 'keys', `${name}.key`);
}

export function sshLogFileFor(config: Config, name: string): string {
  return posix.join(config.stateDir, 'logs', `${name}.ssh.log`);
}

export function knownHostsFile(config: Config): string {
  return posix.join(config.stateDir, 'known_hosts');
}

const KEY_DIGEST_PREFIX = 'sha256:';

/** What is persisted as the volume's options: the key itself lives only in its 0600 key file. */
export function storedOptions(given: Record<string, string>, key: string | undefined): Record<string, string> {
  const out = { ...given };
  if (key !== undefined) out.key = KEY_DIGEST_PREFIX + createHash('sha256').update(key).digest('hex');
  return out;
}

export function sameOptions(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** A stored volume's options as the plugin uses them, or why this version refuses them. */
export type ParsedOptions = { opts: VolumeOptions; problem?: undefined } | { opts?: undefined; problem: string };

function parseStored(record: Readonly<VolumeRecord>, config: Config): ParsedOptions {
  const { key: _digest, umask, ...rest } = record.options;
  // Volumes created before `mode` replaced `umask` keep working: mode is exactly 0777 minus that umask.
  if (umask !== undefined && rest.mode === undefined) rest.mode = (0o777 & ~parseInt(umask, 8)).toString(8).padStart(3, '0');
  try {
    return { opts: parseOptions(rest, { keysDir: config.keysDir }) };
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    return {
      problem:
        `volume ${record.name} was created with options this version refuses: ${error.message}. ` +
        `Remove it and create it again with allowed options (docker volume rm ${record.name})`,
    };
  }
}

/**
 * The volume's options (the key is replaced by its key file). For Get, a volume created by an older version whose
 * options today's rules refuse still answers: `problem` says what to change. Parsed once per volume and kept (in the
 * plugin's memory) until the stored options change (a volume removed and created again with others).
 */
export function optionsOrProblem(record: Readonly<VolumeRecord>, deps: Pick<Deps, 'config' | 'memory'>): ParsedOptions {
  const cache = deps.memory.parsedOptions;
  const kept = cache.get(record.name);
  if (kept !== undefined && sameOptions(kept.stored, record.options)) return kept.parsed;
  const parsed = parseStored(record, deps.config);
  cache.set(record.name, { stored: { ...record.options }, parsed });
  return parsed;
}

/** Like optionsOrProblem, for a Mount: refused options throw a UserError that says what to change. */
export function optionsOf(record: Readonly<VolumeRecord>, deps: Pick<Deps, 'config' | 'memory'>): VolumeOptions {
  const { opts, problem } = optionsOrProblem(record, deps);
  if (opts === undefined) throw new UserError(problem);
  return opts;
}

/** A removed volume's parsed options are not kept. */
export function forgetOptions(name: string, deps: Pick<Deps, 'memory'>): void {
  deps.memory.parsedOptions.delete(name);
}

/** How often Docker mounted the volume with this ID; own properties only, so an ID like "toString" counts 0. */
export function mountCount(record: VolumeRecord, id: string): number {
  return Object.hasOwn(record.mounts, id) ? (record.mounts[id] ?? 0) : 0;
}

/**
 * Sets how often Docker mounted the volume with this ID (0 removes it). Defined, not assigned: an ID such as
 * "__proto__" must become an ordinary key, not change the object's prototype.
 */
export function setMountCount(record: VolumeRecord, id: string, count: number): void {
  if (count > 0) Object.defineProperty(record.mounts, id, { value: count, enumerable: true, writable: true, configurable: true });
  else delete record.mounts[id];
}

export function referenceCount(record: VolumeRecord): number {
  return Object.values(record.mounts).reduce((a, b) => a + b, 0);
}

export async function getVolume(deps: Deps, name: string): Promise<VolumeRecord> {
  const record = await deps.store.get(name);
  if (record === undefined) throw new NoSuchVolume(name);
  return record;
}
