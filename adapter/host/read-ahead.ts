// The kernel read-ahead of the plugin's mounts: each FUSE mount's own /sys/class/bdi/<major:minor>/read_ahead_kb.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ReadAheadControl } from '../../handlers/types.js';
import { readMountInfo } from './proc-mounts.js';

export function createReadAhead(procDir = '/proc', sysDir = '/sys'): ReadAheadControl {
  /** The mount's own read_ahead_kb in /sys/class/bdi (named after its major:minor). */
  const readAheadFile = async (path: string, known?: string): Promise<string> => {
    const device = known ?? readMountInfo(procDir).find((e) => e.mountPoint === path)?.device;
    if (device === undefined) throw new Error(`${path} is not mounted`);
    if (!/^[0-9]+:[0-9]+$/.test(device)) throw new Error(`unexpected device "${device}" for ${path}`);
    return `${sysDir}/class/bdi/${device}/read_ahead_kb`;
  };
  return {
    async set(path, kb, device) {
      // Called once the mount answered its first request (the fresh-mount check): FUSE's INIT is done, and the kernel
      // no longer lowers the value to what sshfs answered in it (128 KiB).
      // Synchronous, like the read in get(): a sysfs attribute of the kernel's own, which no server can make wait, and
      // two thread-pool round trips fewer inside every cold Mount.
      const file = await readAheadFile(path, device);
      writeFileSync(file, `${kb}\n`, { flag: 'r+' });
      const now = readFileSync(file, 'utf8').trim();
      if (now !== String(kb)) throw new Error(`the kernel kept read_ahead_kb at ${now}`);
    },
    async get(path, device) {
      try {
        const text = readFileSync(await readAheadFile(path, device), 'utf8').trim();
        return /^[0-9]+$/.test(text) ? Number(text) : undefined;
      } catch {
        return undefined; // not mounted, or no /sys
      }
    },
  };
}
