import { UserError } from './errors.js';
import { requireName } from './request.js';
import { respond } from './respond.js';
import { releaseSharedConnection } from './shared-ssh.js';
import type { Deps, ErrResponse } from './types.js';
import { cancelIdleUnmount, unmountSshfs } from './unmount.js';
import { getVolume, referenceCount, sshLogFileFor } from './volume.js';

export async function remove(request: unknown, deps: Deps): Promise<ErrResponse> {
  return respond<ErrResponse>(deps, 'Remove', {}, async () => {
    const name = requireName(request);
    return deps.locks.withLock(name, async () => {
      const record = await getVolume(deps, name);
      const refs = referenceCount(record);
      if (refs === 0 && cancelIdleUnmount(record, deps)) {
        // Kept mounted only by unmount_delay: no container uses it, so Docker's Remove ends it now. (Any other
        // mount found here is left alone and refused below: the plugin does not unmount what it cannot account for.)
        delete record.mountedAt;
        await deps.store.put(record);
        await unmountSshfs(record, deps);
      }
      if (refs > 0 || (await deps.mounts.isMounted(record.mountpoint))) {
        throw new UserError(
          `volume ${name} is still mounted (${refs} reference(s)); stop the containers that use it, then remove it`,
        );
      }
      // Only an empty, unmounted directory is removed: nothing inside a mountpoint is ever deleted.
      const dir = await deps.fs.removeEmptyDir(record.mountpoint);
      if (dir === 'not-empty') {
        throw new UserError(
          `mountpoint ${record.mountpoint} of volume ${name} is not empty although nothing is mounted there; ` +
            'the plugin will not delete files: move them away, then remove the volume again',
        );
      }
      await deps.store.delete(name);
      if (record.keyFile !== undefined) await deps.fs.removeFile(record.keyFile);
      await deps.fs.removeFile(sshLogFileFor(deps.config, name));
      await releaseSharedConnection(record, deps);
      deps.log.info(`removed volume ${name}; remote files untouched`);
      return { Err: '' };
    });
  });
}
