// A tiny timing proxy between dockerd and a volume plugin's socket (bench only): dockerd finds it in
// /run/docker/plugins under its own driver name and every byte is passed on unchanged, while each request's path,
// body and the time from its first byte to the last byte of its answer are recorded. That is each request's latency
// as dockerd sees it (plus this proxy's own hop, the same for every plugin behind it).
import { rmSync } from 'node:fs';
import net from 'node:net';

export interface TracedRequest {
  path: string;
  /** The request's JSON body as sent (volume name, mount ID). */
  body: string;
  /** Which of dockerd's connections it came on (numbered from 1): whether dockerd keeps connections alive. */
  connection: number;
  /** performance.now() when its first byte arrived, and when the last byte of its answer was passed back. */
  start: number;
  end: number;
  status: number;
}

export interface TraceProxy {
  requests: TracedRequest[];
  close(): Promise<void>;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** One HTTP/1.1 message at the front of BUF: its header text and total length, or undefined while incomplete. */
function message(buf: Buffer): { head: string; length: number; body: Buffer } | undefined {
  const end = buf.indexOf(HEADER_END);
  if (end < 0) return undefined;
  const head = buf.subarray(0, end).toString('latin1');
  const bodyStart = end + HEADER_END.length;
  const cl = /\r\ncontent-length: *([0-9]+)/i.exec(head);
  if (cl !== null) {
    const length = bodyStart + Number(cl[1]);
    return buf.length >= length ? { head, length, body: buf.subarray(bodyStart, length) } : undefined;
  }
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
    // Chunked bodies (Go's server uses them for larger answers): walk the chunks to the last, empty one.
    let at = bodyStart;
    const parts: Buffer[] = [];
    for (;;) {
      const line = buf.indexOf('\r\n', at);
      if (line < 0) return undefined;
      const size = parseInt(buf.subarray(at, line).toString('latin1'), 16);
      if (Number.isNaN(size)) return undefined;
      const next = line + 2 + size + 2;
      if (buf.length < next) return undefined;
      if (size === 0) return { head, length: next, body: Buffer.concat(parts) };
      parts.push(buf.subarray(line + 2, line + 2 + size));
      at = next;
    }
  }
  return { head, length: bodyStart, body: Buffer.alloc(0) };
}

export async function startTraceProxy(listenPath: string, upstreamPath: string): Promise<TraceProxy> {
  const requests: TracedRequest[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    const connection = ++connections;
    const upstream = net.connect(upstreamPath);
    sockets.add(client);
    sockets.add(upstream);
    const waiting: Array<Omit<TracedRequest, 'end' | 'status'>> = [];
    let fromClient = Buffer.alloc(0);
    let fromPlugin = Buffer.alloc(0);
    let requestStart: number | undefined;
    client.on('data', (chunk: Buffer) => {
      const start = requestStart ?? performance.now();
      requestStart = start;
      upstream.write(chunk);
      fromClient = Buffer.concat([fromClient, chunk]);
      for (let m = message(fromClient); m !== undefined; m = message(fromClient)) {
        const path = /^[A-Z]+ (\S+)/.exec(m.head)?.[1] ?? '?';
        waiting.push({ path, body: m.body.toString('utf8'), connection, start: requestStart ?? start });
        fromClient = fromClient.subarray(m.length);
        requestStart = fromClient.length > 0 ? performance.now() : undefined;
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      fromPlugin = Buffer.concat([fromPlugin, chunk]);
      const answered: number[] = [];
      for (let m = message(fromPlugin); m !== undefined; m = message(fromPlugin)) {
        answered.push(Number(/^HTTP\/1\.[01] ([0-9]+)/.exec(m.head)?.[1] ?? 0));
        fromPlugin = fromPlugin.subarray(m.length);
      }
      client.write(chunk);
      const end = performance.now();
      for (const status of answered) {
        const req = waiting.shift();
        if (req !== undefined) requests.push({ ...req, end, status });
      }
    });
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
  });
  rmSync(listenPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPath, () => resolve());
  });
  return {
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(listenPath, { force: true });
    },
  };
}
