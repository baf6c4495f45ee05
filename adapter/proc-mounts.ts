// The kernel's mount table and the sshfs processes behind it, as this process sees them
// (the plugin's own mount and PID namespaces when it runs as a managed plugin).
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { MountState, MountTable } from '../handlers/types.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(mountinfo: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const mountPoint = fields[4];
    const fsType = fields[fields.indexOf('-') + 1];
    if (mountPoint !== undefined && fsType !== undefined && fields.includes('-')) {
      entries.push({ mountPoint: unescape(mountPoint), fsType });
    }
  }
  return entries;
}

/** Mount points served by a running sshfs, from each sshfs process's command line. */
async function sshfsServedPaths(procDir: string): Promise<Set<string>> {
  const served = new Set<string>();
  const pids = (await readdir(procDir)).filter((d) => /^[0-9]+$/.test(d));
  await Promise.all(
    pids.map(async (pid) => {
      try {
        const argv = (await readFile(`${procDir}/${pid}/cmdline`, 'utf8')).split('\0');
        if (basename(argv[0] ?? '') === 'sshfs') argv.slice(1).forEach((a) => served.add(a));
      } catch {
        // the process ended while we looked
      }
    }),
  );
  return served;
}

export function createProcMountTable(procDir = '/proc'): MountTable {
  const entries = async () => parseMountInfo(await readFile(`${procDir}/self/mountinfo`, 'utf8'));
  return {
    async isMounted(path) {
      return (await entries()).some((e) => e.mountPoint === path);
    },
    async state(path): Promise<MountState> {
      const entry = (await entries()).find((e) => e.mountPoint === path);
      if (entry === undefined) return 'absent';
      if (entry.fsType !== 'fuse.sshfs') return 'mounted';
      return (await sshfsServedPaths(procDir)).has(path) ? 'mounted' : 'stale';
    },
    async sshfsMountsUnder(dir) {
      const prefix = dir.endsWith('/') ? dir : `${dir}/`;
      return (await entries()).filter((e) => e.fsType === 'fuse.sshfs' && e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
    },
  };
}
