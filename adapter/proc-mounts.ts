// The kernel's mount table as this process sees it (the plugin's own mount namespace when managed).
import { readFile } from 'node:fs/promises';
import type { MountTable } from '../handlers/types.js';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountPoints(mountinfo: string): Set<string> {
  const points = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) points.add(unescape(field));
  }
  return points;
}

export function createProcMountTable(file = '/proc/self/mountinfo'): MountTable {
  return {
    async isMounted(path) {
      return parseMountPoints(await readFile(file, 'utf8')).has(path);
    },
  };
}
