// A filesystem in memory, for unit tests and dry runs. A dry run lays it over the host's (`new MemoryFs(hostFs)`):
// files the operator placed (keys, known_hosts) are read from the host, and everything the plugin would write or
// remove (mountpoints, key files, ssh logs) happens in memory only. Unit tests use it alone, and may place files,
// directories and symlinks themselves.
import type { FileInfo, FileVersion, HostFs } from '../../handlers/types.js';

export class MemoryFs implements HostFs {
  readonly dirs = new Set<string>();
  readonly files = new Map<string, { content: string; mode: number }>();
  /** Symlinks: path -> target (absolute). */
  readonly links = new Map<string, string>();
  /** Files removed here: they hide the host's. */
  private readonly removed = new Set<string>();

  /** below: the filesystem read where nothing was written or removed here (none: everything else is absent). */
  constructor(private readonly below?: HostFs) {}

  async ensureDir(path: string) {
    this.dirs.add(path);
  }
  async removeEmptyDir(path: string) {
    if (!this.dirs.has(path)) return 'absent' as const;
    if ([...this.files.keys()].some((f) => f.startsWith(`${path}/`))) return 'not-empty' as const;
    this.dirs.delete(path);
    return 'removed' as const;
  }
  async writeSecretFile(path: string, content: string) {
    this.files.set(path, { content, mode: 0o600 });
    this.removed.delete(path);
  }
  async removeFile(path: string) {
    this.files.delete(path);
    this.removed.add(path);
  }
  /** The host's view where this one holds nothing of its own: undefined when it holds the path or hides it. */
  private underneath(path: string): HostFs | undefined {
    return this.files.has(path) || this.dirs.has(path) || this.removed.has(path) ? undefined : this.below;
  }
  async readText(path: string, maxBytes = 64 * 1024) {
    const file = this.files.get(path);
    if (file !== undefined) return file.content.slice(-maxBytes);
    return (await this.underneath(path)?.readText(path, maxBytes)) ?? '';
  }
  async exists(path: string) {
    if (this.dirs.has(path) || this.files.has(path)) return true;
    return (await this.underneath(path)?.exists(path)) ?? false;
  }
  /** The content itself is the version here: it changes exactly when the content does (tests set files directly). */
  async fileVersion(path: string): Promise<FileVersion | undefined> {
    const file = this.files.get(path);
    if (file !== undefined) return { size: Buffer.byteLength(file.content), version: `memory:${file.content}` };
    return this.underneath(path)?.fileVersion(path);
  }
  async fileInfo(path: string): Promise<FileInfo | undefined> {
    const realPath = this.links.get(path) ?? path;
    const file = this.files.get(realPath);
    if (file !== undefined) return { realPath, isFile: true, size: Buffer.byteLength(file.content) };
    if (this.dirs.has(realPath)) return { realPath, isFile: false, size: 0 };
    return this.links.has(path) ? undefined : this.underneath(path)?.fileInfo(path);
  }
}
