// The Unix socket a front end listens on (the Docker socket, the CSI endpoint): what a crashed run left there.
import { lstat, unlink } from 'node:fs/promises';

/** A socket left by a crashed run would make listen fail with EADDRINUSE. */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    const info = await lstat(socketPath);
    if (!info.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
    await unlink(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
