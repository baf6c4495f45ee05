// The kernel's mount table as this process sees it (the plugin's own mount namespace when it runs as a managed
// plugin), and whether the sshfs behind each mount still runs.
import { readFileSync } from 'node:fs';
import type { MountState, MountTable } from '../handlers/types.js';
import { isSshfsServing, type ProcessFinder } from './processes.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  /** major:minor of the filesystem: also the name of its /sys/class/bdi entry. */
  device: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(mountinfo: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const mountPoint = fields[4];
    const device = fields[2];
    const fsType = fields[fields.indexOf('-') + 1];
    if (mountPoint !== undefined && device !== undefined && fsType !== undefined && fields.includes('-')) {
      entries.push({ mountPoint: unescapeMountField(mountPoint), fsType, device });
    }
  }
  return entries;
}

/** Read synchronously: a small procfs file, and one read beats several thread-pool round trips per request. */
export function readMountInfo(procDir = '/proc'): MountEntry[] {
  return parseMountInfo(readFileSync(`${procDir}/self/mountinfo`, 'utf8'));
}

export function createProcMountTable(finder: ProcessFinder, procDir = '/proc'): MountTable {
  const entries = () => readMountInfo(procDir);
  return {
    async isMounted(path) {
      return entries().some((e) => e.mountPoint === path);
    },
    async state(path): Promise<MountState> {
      const entry = entries().find((e) => e.mountPoint === path);
      if (entry === undefined) return 'absent';
      if (entry.fsType !== 'fuse.sshfs') return 'mounted';
      return (await finder.find(`sshfs ${path}`, isSshfsServing(path))) !== undefined ? 'mounted' : 'stale';
    },
    async sshfsMountsUnder(dir) {
      const prefix = dir.endsWith('/') ? dir : `${dir}/`;
      return entries().filter((e) => e.fsType === 'fuse.sshfs' && e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
    },
  };
}
