import { UserError } from '../errors.js';
import { MAX_JUMP_HOSTS } from '../options.js';
import { cancelIdleUnmount, unmountUnused } from '../lifecycle.js';
import type { VolumeRequest } from '../requests.js';
import { jumpHostLogFile, releaseSharedConnection } from '../ssh-login.js';
import type { Deps } from '../types.js';
import { forgetOptions, getVolume, referenceCount, sshLogFileFor } from '../volume.js';

/**
 * The plugin's socket may be shared (Podman pointed at it, a second dockerd, any client of the socket), so a Remove
 * does not prove that no container uses the volume: dockerd checked only its own containers. While the mount is up,
 * Remove asks the kernel who holds it (binds of its filesystem in any mount namespace) and refuses, changing
 * nothing, while anyone does. Where that cannot be seen (a managed plugin sees only its own pid namespace) the
 * references stand in for it; a managed plugin's references from before a restart are released at start, since its
 * mounts die with it. References still held when nothing holds the mount are ones no Unmount will ever release
 * (Unmounts lost when the plugin was killed while answering them): they are dropped here and the volume is unmounted
 * like any other, or one lost Unmount would pin it forever.
 */
export async function remove({ name }: VolumeRequest, deps: Deps): Promise<void> {
  return deps.locks.withLock(name, async () => {
    const record = await getVolume(deps, name);
    const refs = referenceCount(record);
    if ((await deps.mounts.state(record.mountpoint, record.sshfs)) === 'mounted') await refuseWhileHeld(record.mountpoint, name, refs, deps);
    const delayed = cancelIdleUnmount(record, deps);
    const ours = (await deps.mounts.sshfsMountsUnder(deps.config.mountRoot)).includes(record.mountpoint);
    if (refs > 0 || delayed || ours) {
      if (refs > 0) {
        deps.log.info(
          `volume ${name}: Remove with ${refs} reference(s) never released (Unmounts lost in a crash or stop); ` +
            'nothing holds its mount any more, so they are dropped and the mount is detached',
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
    forgetOptions(name, deps);
    if (record.keyFile !== undefined) await deps.fs.removeFile(record.keyFile);
    await deps.fs.removeFile(sshLogFileFor(deps.config, name));
    if (record.options.ProxyJump !== undefined) {
      for (let index = 0; index < MAX_JUMP_HOSTS; index++) await deps.fs.removeFile(jumpHostLogFile(sshLogFileFor(deps.config, name), index));
    }
    await releaseSharedConnection(record, deps);
    deps.log.info(`removed volume ${name}; remote files untouched`);
  });
}

/** Throws (changing nothing) while a container, of any engine, still holds the volume's mount. */
async function refuseWhileHeld(mountpoint: string, name: string, refs: number, deps: Deps): Promise<void> {
  const holders = await deps.mounts.usersOf?.(mountpoint);
  if (holders !== undefined && holders > 0) {
    throw new UserError(
      `volume ${name} is in use: ${holders} mount(s) of it are held elsewhere (containers, or a docker cp), possibly by ` +
        'another engine sharing this plugin (Podman, a second dockerd) that this request\'s engine does not know of; ' +
        'stop what uses it, then remove the volume again. Nothing was changed',
    );
  }
  if (holders === undefined && refs > 0) {
    throw new UserError(
      `volume ${name} is in use: the plugin holds ${refs} mount reference(s) for containers that have not released it, ` +
        'possibly of another engine sharing this plugin (Podman, a second dockerd); stop them, then remove the volume ' +
        'again. Nothing was changed',
    );
  }
}
