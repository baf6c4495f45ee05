import { resolveKnownHosts, resolveLogin, withCertificate } from '../credentials.js';
import { meaningfulLines } from '../diagnose.js';
import { UserError } from '../errors.js';
import { parseOptions, type VolumeOptions } from '../options.js';
import { checkNewVolumeName, type CreateRequest } from '../requests.js';
import type { Deps, VolumeRecord } from '../types.js';
import { keyFileFor, knownHostsFile, mountpointFor, sameOptions, storedOptions } from '../volume.js';

export async function create({ name, options: opts }: CreateRequest, deps: Deps): Promise<void> {
  checkNewVolumeName(name);
  const parsed = parseOptions(opts, { keysDir: deps.config.keysDir });
  const options = storedOptions(parsed.given, parsed.key);
  return deps.locks.withLock(name, async () => {
    const existing = await deps.store.get(name);
    if (existing !== undefined) {
      // Docker asks Get first, so this is a race or a direct call: same options is a no-op, others never overwrite.
      if (sameOptions(existing.options, options)) return;
      throw new UserError(
        `volume ${name} already exists with different options; remove it first (docker volume rm ${name}) or choose another name`,
      );
    }
    await checkAlgorithmNames(parsed, deps);
    // Files named in the options, or the operator's default key, must be usable now: say so at Create, not at Mount.
    if (parsed.key === undefined) await withCertificate(parsed, await resolveLogin(parsed, undefined, deps), deps);
    else await withCertificate(parsed, { keyFile: '', source: 'key' }, deps);
    await resolveKnownHosts(parsed, knownHostsFile(deps.config), deps);
    const record: VolumeRecord = {
      name,
      createdAt: deps.now().toISOString(),
      options,
      mountpoint: mountpointFor(deps.config, name),
      mounts: {},
    };
    if (parsed.key !== undefined) {
      record.keyFile = keyFileFor(deps.config, name);
      await deps.fs.writeSecretFile(record.keyFile, parsed.key);
    }
    try {
      await deps.store.put(record);
    } catch (error) {
      if (record.keyFile !== undefined) await deps.fs.removeFile(record.keyFile);
      throw error;
    }
    deps.log.info(`created volume ${name} (${parsed.given.sshcmd})`);
    deps.runner.prepare?.();
  });
}

/** The algorithm options a user may set: ssh checks their names before it connects. */
const ALGORITHM_OPTIONS = ['Ciphers', 'KexAlgorithms', 'HostKeyAlgorithms', 'PubkeyAcceptedAlgorithms'] as const;

/**
 * ssh refuses a misspelt cipher or key exchange ("Bad SSH2 cipher spec") before it connects, on a stderr sshfs does
 * not pass on, so a Mount would fail with no message at all. `ssh -G` (print the configuration, connect nowhere; no
 * config file) reports it now, with ssh's own words. Only run when the user gave one: Create stays process-free.
 */
async function checkAlgorithmNames(parsed: VolumeOptions, deps: Deps): Promise<void> {
  const given = ALGORITHM_OPTIONS.filter((k) => parsed.given[k] !== undefined);
  if (given.length === 0) return;
  const args = ['-G', '-F', '/dev/null'];
  for (const k of given) args.push('-o', `${k}=${parsed.ssh[k]}`);
  args.push('localhost');
  const result = await deps.runner.run('ssh', args, { timeoutMs: 10_000 });
  const said = meaningfulLines(result.stderr).at(-1);
  if (result.exitCode !== 0 && !result.timedOut && said !== undefined) {
    throw new UserError(
      `ssh refuses ${given.map((k) => `-o ${k}=${parsed.given[k]}`).join(' ')}: ${said} ` +
        '(ssh -Q cipher, ssh -Q kex, ssh -Q HostKeyAlgorithms and ssh -Q PubkeyAcceptedAlgorithms list the names it knows)',
    );
  }
}
