// Serves the Hono app on the plugin's Unix socket, and stops it gracefully.
import { createAdaptorServer } from '@hono/node-server';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Hono } from 'hono';

export interface StopReport {
  /** Requests that were still running when the grace period ran out (their connections were cut). */
  cut: number;
  /** Requests that were running when the stop began. */
  inFlightAtStop: number;
}

export interface RunningServer {
  /**
   * Stops accepting connections, lets the requests in flight finish for at most graceMs, then closes every
   * connection. dockerd re-sends a request whose connection is cut with an EMPTY body, so cutting one is the
   * last resort, not the way to stop.
   */
  close(graceMs?: number): Promise<StopReport>;
  /** Requests being served now. */
  inFlight(): number;
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
  const running = new Set<ServerResponse>();
  let stopping = false;
  let settle: (() => void) | undefined;
  server.on('request', (_req, res: ServerResponse) => {
    running.add(res);
    // Once stopping, no connection is kept alive for another request: the client opens a new one and finds no socket.
    if (stopping && !res.headersSent) res.setHeader('Connection', 'close');
    res.on('close', () => {
      running.delete(res);
      if (stopping && running.size === 0) settle?.();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const ourSocket = (await lstat(socketPath)).ino;
  return {
    inFlight: () => running.size,
    close: async (graceMs = 0) => {
      stopping = true;
      const inFlightAtStop = running.size;
      for (const res of running) if (!res.headersSent) res.setHeader('Connection', 'close');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections(); // idle keep-alive connections carry no request: nothing is lost
      await unlinkIfOurs(socketPath, ourSocket);
      if (running.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          settle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      const cut = running.size;
      server.closeAllConnections();
      await closed;
      return { cut, inFlightAtStop };
    },
  };
}

/** Only our own socket: a plugin started after this one may already listen on the same path. */
async function unlinkIfOurs(socketPath: string, ino: number): Promise<void> {
  try {
    if ((await lstat(socketPath)).ino === ino) await unlink(socketPath);
  } catch {
    // already gone
  }
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
