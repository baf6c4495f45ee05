// Serves the Hono app on the plugin's Unix socket.
import { createAdaptorServer } from '@hono/node-server';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { dirname } from 'node:path';
import type { Hono } from 'hono';

export interface RunningServer {
  close(): Promise<void>;
}

export async function listenOnSocket(app: Hono, socketPath: string): Promise<RunningServer> {
  await mkdir(dirname(socketPath), { recursive: true });
  await removeStaleSocket(socketPath);
  // dockerd sends an empty Host header; without a hostname the adaptor answers 400.
  const server = createAdaptorServer({
    fetch: app.fetch,
    hostname: 'localhost',
    serverOptions: { requireHostHeader: false },
  }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
        unlink(socketPath).catch(() => undefined);
      }),
  };
}

/** A socket left by a crashed run would make listen fail with EADDRINUSE. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    const info = await lstat(socketPath);
    if (!info.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
    await unlink(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
