import { UserError } from './errors.js';
import { parseOptions } from './options.js';
import { requireCreate } from './request.js';
import { respond } from './respond.js';
import type { Deps, ErrResponse, VolumeRecord } from './types.js';
import { resolveKnownHosts, resolveLogin } from './credentials.js';
import { keyFileFor, knownHostsFile, mountpointFor, sameOptions, storedOptions } from './volume.js';

/**
 * Longest name Create accepts: 255 (a file name's limit) less what the longest file named after a volume adds
 * (`<name>.ssh.log.tmp-<pid>`: 20 characters with a 7-digit pid), with room to spare.
 */
export const MAX_NEW_NAME_LENGTH = 200;

export async function create(request: unknown, deps: Deps): Promise<ErrResponse> {
  return respond<ErrResponse>(deps, 'Create', {}, async () => {
    const { name, opts } = requireCreate(request);
    if (name.length > MAX_NEW_NAME_LENGTH) {
      // The plugin names files after the volume (its key, its ssh log, their temp files): longer names could never mount.
      throw new UserError(`volume name is ${name.length} characters long; use at most ${MAX_NEW_NAME_LENGTH}`);
    }
    const parsed = parseOptions(opts, { keysDir: deps.config.keysDir });
    const options = storedOptions(parsed.given, parsed.key);
    return deps.locks.withLock(name, async () => {
      const existing = await deps.store.get(name);
      if (existing !== undefined) {
        // Docker asks Get first, so this is a race or a direct call: same options is a no-op, others never overwrite.
        if (sameOptions(existing.options, options)) return { Err: '' };
        throw new UserError(
          `volume ${name} already exists with different options; remove it first (docker volume rm ${name}) or choose another name`,
        );
      }
      // Files named in the options, or the operator's default key, must be usable now: say so at Create, not at Mount.
      if (parsed.key === undefined) await resolveLogin(parsed, undefined, deps);
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
      return { Err: '' };
    });
  });
}
