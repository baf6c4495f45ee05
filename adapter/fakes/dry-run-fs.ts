// The host filesystem as a dry run sees it: files the operator placed (keys, known_hosts) are read from the host,
// and everything the plugin would write or remove (mountpoints, key files, ssh logs) happens in memory only.
import type { FileInfo, HostFs } from '../../handlers/types.js';

export function createDryRunFs(host: HostFs): HostFs {
  /** Paths the dry run wrote (content) or removed (null): they hide the host's. */
  const files = new Map<string, string | null>();
  const dirs = new Set<string>();
  const written = (path: string): string | null | undefined => files.get(path);
  return {
    async ensureDir(path) {
      dirs.add(path);
    },
    async removeEmptyDir(path) {
      if (!dirs.has(path)) return 'absent';
      if ([...files].some(([p, c]) => c !== null && p.startsWith(`${path}/`))) return 'not-empty';
      dirs.delete(path);
      return 'removed';
    },
    async writeSecretFile(path, content) {
      files.set(path, content);
    },
    async removeFile(path) {
      files.set(path, null);
    },
    async exists(path) {
      const w = written(path);
      if (w !== undefined) return w !== null;
      return dirs.has(path) || host.exists(path);
    },
    async readText(path, maxBytes = 64 * 1024) {
      const w = written(path);
      if (w === undefined) return host.readText(path, maxBytes);
      return w === null ? '' : w.slice(-maxBytes);
    },
    async fileInfo(path): Promise<FileInfo | undefined> {
      const w = written(path);
      if (w === undefined) return host.fileInfo(path);
      return w === null ? undefined : { realPath: path, isFile: true, size: Buffer.byteLength(w) };
    },
  };
}
