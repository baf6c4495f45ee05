// Where the plugin's own directories are on the Docker host. A managed plugin sees its state mount at /mnt/state,
// which the user on the host cannot find; error messages that tell the user to edit a file there name the host path.
import { readFile } from 'node:fs/promises';
import { parseMountInfo } from './proc-mounts.js';

/**
 * The host directory bind-mounted at `dir`, from mountinfo's root field (the mounted directory within its
 * filesystem), or undefined when `dir` is not itself a bind mount of a subdirectory (host mode: the path is the
 * host's own). The root field is relative to the filesystem, so on a host whose /var/lib is a filesystem of its own
 * it lacks that prefix; the README gives `docker plugin inspect` for that case.
 */
export function bindSourceOf(dir: string, mountinfo: string): string | undefined {
  // The last entry wins: a later mount on the same point hides the earlier ones.
  const source = parseMountInfo(mountinfo)
    .filter((e) => e.mountPoint === dir)
    .at(-1)?.root;
  return source === undefined || source === '/' || source === dir ? undefined : source;
}

/** Plugin-side directory -> host directory, for the directories that are bind mounts (empty in host mode). */
export async function hostDirsFor(dirs: string[], mountinfoFile = '/proc/self/mountinfo'): Promise<Record<string, string>> {
  const mountinfo = await readFile(mountinfoFile, 'utf8').catch(() => '');
  const out: Record<string, string> = {};
  for (const dir of dirs) {
    const source = bindSourceOf(dir, mountinfo);
    if (source !== undefined) out[dir] = source;
  }
  return out;
}
