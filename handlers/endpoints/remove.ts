import { UserError } from '../errors.js';
import { MAX_JUMP_HOSTS } from '../options.js';
import { jumpHostLogFile } from '../sshfs-args.js';
import { cancelIdleUnmount, unmountUnused } from '../lifecycle.js';
import type { Answer, ErrResponse, NameRequest } from '../protocol.js';
import { releaseSharedConnection } from '../shared-ssh.js';
import type { Deps } from '../types.js';
import { forgetOptions, getVolume, referenceCount, sshLogFileFor } from '../volume.js';

/**
 * dockerd sends Remove only after its own in-use check (no container, running or stopped, refers to the volume; `-f`
 * does not skip it). So references the plugin still holds at Remove are ones Docker will never release: Unmounts lost
 * when the plugin was killed while answering them. They are dropped here and the volume is unmounted like any other
 * (unmountVolume: lazily if something outside Docker holds it); otherwise one lost Unmount would pin it forever.
 */
export async function remove({ Name: name }: NameRequest, deps: Deps): Promise<Answer<ErrResponse>> {
  return deps.locks.withLock(name, async () => {
    const record = await getVolume(deps, name);
    const refs = referenceCount(record);
    const delayed = cancelIdleUnmount(record, deps);
    const ours = (await deps.mounts.sshfsMountsUnder(deps.config.mountRoot)).includes(record.mountpoint);
    if (refs > 0 || delayed || ours) {
      if (refs > 0) {
        deps.log.info(
          `volume ${name}: Remove with ${refs} reference(s) Docker never released (Unmounts lost in a crash or stop); ` +
            'Docker checked that no container uses it, so they are dropped and the mount is detached',
        );
      }
      record.mounts = {};
      await unmountUnused(record, deps);
    }
    if (await deps.mounts.isMounted(record.mountpoint)) {
      throw new UserError(
        `something other than the volume's sshfs is mounted on ${record.mountpoint}; the plugin does not unmount ` +
          'what it did not mount: unmount it, then remove the volume again',
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
    forgetOptions(name, deps.config);
    if (record.keyFile !== undefined) await deps.fs.removeFile(record.keyFile);
    await deps.fs.removeFile(sshLogFileFor(deps.config, name));
    if (record.options.ProxyJump !== undefined) {
      for (let index = 0; index < MAX_JUMP_HOSTS; index++) await deps.fs.removeFile(jumpHostLogFile(sshLogFileFor(deps.config, name), index));
    }
    await releaseSharedConnection(record, deps);
    deps.log.info(`removed volume ${name}; remote files untouched`);
    return {};
  });
}
