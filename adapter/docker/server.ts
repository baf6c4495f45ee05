// Serves the Hono app on the plugin's Unix socket, and stops it gracefully.
import { createAdaptorServer } from '@hono/node-server';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server, ServerResponse } from 'node:http';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Hono } from 'hono';
import { removeStaleSocket } from '../host/unix-socket.js';

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

/**
 * Serves APP on socketPath, or, when listenFd is given, on that already listening socket (systemd socket activation:
 * systemd owns the path, keeps listening while the plugin restarts, and queues connections for the next instance).
 */
export async function listenOnSocket(app: Hono, socketPath: string, listenFd?: number): Promise<RunningServer> {
  if (listenFd === undefined) {
    await mkdir(dirname(socketPath), { recursive: true });
    await removeStaleSocket(socketPath);
  }
  // dockerd sends an empty Host header; without a hostname the adaptor answers 400.
  const server = createAdaptorServer({
    fetch: app.fetch,
    hostname: 'localhost',
    serverOptions: { requireHostHeader: false },
  }) as Server;
  const running = new Set<ServerResponse>();
  let stopping = false;
  let lastActivity = performance.now();
  server.on('request', (_req, res: ServerResponse) => {
    running.add(res);
    lastActivity = performance.now();
    // Once stopping, no connection is kept alive for another request: the client opens a new one and finds no socket.
    if (stopping && !res.headersSent) res.setHeader('Connection', 'close');
    res.on('close', () => {
      running.delete(res);
      lastActivity = performance.now();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listening = () => {
      server.off('error', reject);
      resolve();
    };
    if (listenFd === undefined) server.listen(socketPath, listening);
    else server.listen({ fd: listenFd }, listening);
  });
  const ourSocket = listenFd === undefined ? (await lstat(socketPath)).ino : undefined;
  // An inherited socket is systemd's: stop accepting at once and leave its path. Connections that come meanwhile wait
  // in its queue for the next instance instead of finding no socket.
  // net.Server's close, not http.Server's: that one also closes idle kept-alive connections at once, and dockerd may be
  // sending a request on one of them (see close below). Resolves once every connection has ended.
  let closed: Promise<void> | undefined;
  const stopListening = () => (closed ??= new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve())));
  return {
    inFlight: () => running.size,
    close: async (graceMs = 0) => {
      stopping = true;
      const inFlightAtStop = running.size;
      for (const res of running) if (!res.headersSent) res.setHeader('Connection', 'close');
      // First the path: no new connection can reach us (dockerd retries those later, body and all). The listener and
      // the open connections stay a little longer: connections already queued are accepted and served, and a request
      // dockerd sends on a kept-alive connection is answered (then that connection closes). Closing a connection with
      // a request on its way is what makes dockerd retry without a body, so everything closes only once no request
      // has run for QUIET_MS.
      if (ourSocket === undefined) void stopListening();
      else await unlinkIfOurs(socketPath, ourSocket);
      const deadline = performance.now() + graceMs;
      while (performance.now() < deadline && (running.size > 0 || performance.now() - lastActivity < QUIET_MS)) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, Math.max(0, deadline - performance.now()))));
      }
      const cut = running.size;
      const done = stopListening();
      server.closeAllConnections();
      await done;
      return { cut, inFlightAtStop };
    },
  };
}

/** A stop waits until no request has run for this long (within its grace period) before it closes connections. */
const QUIET_MS = 250;
const POLL_MS = 20;

/** Only our own socket: a plugin started after this one may already listen on the same path. */
async function unlinkIfOurs(socketPath: string, ino: number): Promise<void> {
  try {
    if ((await lstat(socketPath)).ino === ino) await unlink(socketPath);
  } catch {
    // already gone
  }
}
