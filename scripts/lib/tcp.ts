// TCP servers on 127.0.0.1 that the tests and the benchmark point volumes at: a host that accepts and then says
// nothing (an ssh server that hangs), and a port that was free a moment ago.
import net from 'node:net';

export interface SilentHost {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Ends every connection and stops listening. */
  close(): Promise<void>;
}

/**
 * A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte: an ssh server that hangs.
 * With GREETING it sends that once on each connection (e.g. an SSH banner) and then nothing; what the client sends
 * is read and ignored.
 */
export async function startSilentHost(greeting?: string): Promise<SilentHost> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    if (greeting !== undefined) {
      socket.on('data', () => undefined);
      socket.write(greeting);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bound, then closed): nothing listens on it now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
