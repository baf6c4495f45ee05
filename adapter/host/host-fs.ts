// The filesystem work handlers ask for, done for real.
import { access, mkdir, open, realpath, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { HostFs } from '../../handlers/types.js';

function code(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

export function createHostFs(): HostFs {
  return {
    async ensureDir(path) {
      await mkdir(path, { recursive: true, mode: 0o755 });
    },
    async removeEmptyDir(path) {
      try {
        await rmdir(path); // rmdir(2) fails on a non-empty directory: nothing inside is ever deleted
        return 'removed';
      } catch (error) {
        if (code(error) === 'ENOENT') return 'absent';
        if (code(error) === 'ENOTEMPTY' || code(error) === 'EEXIST') return 'not-empty';
        throw error;
      }
    },
    async writeSecretFile(path, content, options) {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = `${path}.tmp-${process.pid}`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.chmod(0o600); // in case the file already existed with another mode
        await handle.writeFile(content);
        if (options?.durable !== false) await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
    },
    async removeFile(path) {
      await rm(path, { force: true });
    },
    async readText(path, maxBytes = 64 * 1024) {
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if (code(error) === 'ENOENT') return '';
        throw error;
      }
      try {
        const { size } = await handle.stat();
        const length = Math.min(size, maxBytes);
        const buffer = Buffer.alloc(length);
        await handle.read(buffer, 0, length, size - length);
        return buffer.toString('utf8');
      } finally {
        await handle.close();
      }
    },
    async exists(path) {
      try {
        await access(path);
        return true;
      } catch {
        return false;
      }
    },
    async fileVersion(path) {
      try {
        // Nanosecond times, and the inode: a log rewritten (a new file renamed over it) or appended to gets a new one.
        const s = await stat(path, { bigint: true });
        return { size: Number(s.size), version: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` };
      } catch (error) {
        if (code(error) === 'ENOENT') return undefined;
        throw error;
      }
    },
    async fileInfo(path) {
      try {
        const realPath = await realpath(path);
        const info = await stat(realPath);
        return { realPath, isFile: info.isFile(), size: info.size };
      } catch {
        return undefined;
      }
    },
  };
}
