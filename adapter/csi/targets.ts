// The publish targets Swarm names (/data/published/<Swarm's volume id>): each is made a symlink to the volume's
// mountpoint, which lies below the same propagated directory, so the link resolves on the host as well (Docker binds
// the target into the task's container from the host side). A target that is anything but our link or an empty
// directory is left alone: nothing in it is ever deleted.
import { lstat, readlink, rename, rmdir, symlink, unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { status } from '@grpc/grpc-js';
import { RpcError } from './rpc.js';

/** The last component of a target: Swarm's volume id (letters and digits); dot names are ours (the mount root). */
const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** Checks that a target is a direct child of the publish root; returns its name (the reference it holds). */
export function targetName(publishRoot: string, target: string): string {
  const name = posix.basename(target);
  if (!posix.isAbsolute(target) || posix.normalize(target) !== target || posix.dirname(target) !== publishRoot || !TARGET_NAME.test(name)) {
    throw new RpcError(
      status.INVALID_ARGUMENT,
      `target_path must be ${publishRoot}/<id> (letters, digits, _ and -); got ${JSON.stringify(target.slice(0, 200))}`,
    );
  }
  return name;
}

async function kind(path: string): Promise<'absent' | 'link' | 'dir' | 'other'> {
  try {
    const info = await lstat(path);
    return info.isSymbolicLink() ? 'link' : info.isDirectory() ? 'dir' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw error;
  }
}

/** Makes target a symlink to mountpoint (relative, so it resolves from the host's side too); atomic for an old link. */
export async function linkTarget(target: string, mountpoint: string): Promise<void> {
  const relative = posix.relative(posix.dirname(target), mountpoint);
  const now = await kind(target);
  if (now === 'link' && (await readlink(target)) === relative) return;
  if (now === 'dir') {
    // Only an empty directory (e.g. made by someone expecting a mount) is replaced; rmdir refuses any other.
    await rmdir(target).catch((error: NodeJS.ErrnoException) => {
      throw new RpcError(status.FAILED_PRECONDITION, `${target} is a directory that is not empty (${error.code}); the plugin does not delete files: move them away`);
    });
  } else if (now === 'other') {
    throw new RpcError(status.FAILED_PRECONDITION, `${target} exists and is not a directory; the plugin does not replace it: remove it`);
  }
  const temporary = `${target}.link-${process.pid}`;
  await unlink(temporary).catch(() => undefined);
  await symlink(relative, temporary);
  await rename(temporary, target);
}

/** Removes the target if it is a link (or an empty directory); says what it found. */
export async function unlinkTarget(target: string): Promise<'removed' | 'absent' | 'kept'> {
  switch (await kind(target)) {
    case 'absent':
      return 'absent';
    case 'link':
      await unlink(target);
      return 'removed';
    case 'dir':
      return (await rmdir(target).then(
        () => true,
        () => false,
      ))
        ? 'removed'
        : 'kept';
    default:
      return 'kept';
  }
}

/** Whether target is a link (a publication that existed when the plugin stopped). */
export async function isLinked(target: string): Promise<boolean> {
  return (await kind(target)) === 'link';
}
