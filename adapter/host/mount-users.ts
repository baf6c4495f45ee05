// Who still uses a mount: binds of the same filesystem anywhere else, in every mount namespace on the host. Only a
// process's ns/mnt link and its mountinfo are read (asynchronously, in the thread pool): neither takes the process's
// memory lock (a command line or environment read would, and block while it is held), and the whole scan is bounded
// in time, so a slow answer delays only the request that asked.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { parseMountInfo } from './proc-mounts.js';

/** The kernel's fixed inode number of the initial PID namespace: only there does /proc show every process. */
const INITIAL_PID_NAMESPACE = 'pid:[4026531836]';

/**
 * How many mounts of the filesystem mounted at path exist at other mount points, across every mount namespace (a
 * container's bind of the volume, `docker cp`'s bind in dockerd's namespace). Copies at path itself (our own mount and
 * its propagated peers) do not count. undefined when this process cannot see every namespace (a managed plugin runs
 * in its own PID namespace) or path is not mounted: then nobody can tell, and the caller must assume it is used.
 */
export function mountUsers(path: string, procDir = '/proc', timeoutMs = SCAN_TIMEOUT_MS): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  return Promise.race([countMountUsers(path, procDir), late]).finally(() => clearTimeout(timer));
}

/** Longest a scan may take: past it, nobody can tell (undefined), and the caller assumes the mount is used. */
const SCAN_TIMEOUT_MS = 5_000;

async function countMountUsers(path: string, procDir: string): Promise<number | undefined> {
  try {
    if ((await readlink(`${procDir}/self/ns/pid`)) !== INITIAL_PID_NAMESPACE) return undefined;
    const own = parseMountInfo(await readFile(`${procDir}/self/mountinfo`, 'utf8')).find((e) => e.mountPoint === path);
    if (own === undefined) return undefined;
    const seen = new Set<string>();
    let users = 0;
    for (const pid of ['self', ...(await readdir(procDir)).filter((d) => /^[0-9]+$/.test(d))]) {
      let text: string;
      try {
        const ns = await readlink(`${procDir}/${pid}/ns/mnt`);
        if (seen.has(ns)) continue;
        seen.add(ns);
        text = await readFile(`${procDir}/${pid}/mountinfo`, 'utf8');
      } catch {
        continue; // the process ended while we looked
      }
      users += parseMountInfo(text).filter((e) => e.device === own.device && e.mountPoint !== path).length;
    }
    return users;
  } catch {
    return undefined;
  }
}
