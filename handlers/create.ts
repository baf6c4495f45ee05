import { UserError } from './errors.js';
import { parseOptions } from './options.js';
import { requireCreate } from './request.js';
import { respond } from './respond.js';
import type { Deps, ErrResponse, VolumeRecord } from './types.js';
import { keyFileFor, mountpointFor, sameOptions, storedOptions } from './volume.js';

export async function create(request: unknown, deps: Deps): Promise<ErrResponse> {
  return respond<ErrResponse>(deps, 'Create', {}, async () => {
    const { name, opts } = requireCreate(request);
    const parsed = parseOptions(opts);
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
      if (parsed.identityFile !== undefined && !(await deps.fs.exists(parsed.identityFile))) {
        throw new UserError(
          `IdentityFile ${parsed.identityFile} does not exist where the plugin runs; for the managed plugin, put the key in the ` +
            'host directory given as keys.source (docker plugin set) and use -o IdentityFile=/keys/<file>',
        );
      }
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
