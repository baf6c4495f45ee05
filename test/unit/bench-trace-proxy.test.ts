import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pluginRequest } from '../../scripts/lib/plugin-request.js';
import { summarize, type RunTrace } from '../../scripts/bench/requests.js';
import { startTraceProxy, type TraceProxy } from '../../scripts/bench/trace-proxy.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A plugin stand-in on a Unix socket: answers each path after DELAY ms, Get with a chunked body. */
async function upstream(dir: string): Promise<string> {
  const socket = join(dir, 'plugin.sock');
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const delay = req.url === '/VolumeDriver.Mount' ? 30 : 0;
      setTimeout(() => {
        if (req.url === '/VolumeDriver.Get') {
          res.writeHead(200); // no Content-Length: chunked
          res.write('{"Volume":');
          res.end(`${JSON.stringify({ Name: (JSON.parse(body) as { Name: string }).Name })},"Err":""}`);
        } else {
          const text = req.url === '/VolumeDriver.Unmount' ? '{"Err":"busy"}' : '{"Err":""}';
          res.writeHead(req.url === '/VolumeDriver.Unmount' ? 500 : 200, { 'Content-Length': Buffer.byteLength(text) });
          res.end(text);
        }
      }, delay);
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return socket;
}

describe('the bench\'s timing proxy', () => {
  it('passes requests and answers through unchanged over one kept-alive connection, and times each', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'trace-proxy-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const proxySocket = join(dir, 'proxy.sock');
    const proxy: TraceProxy = await startTraceProxy(proxySocket, await upstream(dir));
    cleanups.push(() => proxy.close());
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const get = await pluginRequest(proxySocket, '/VolumeDriver.Get', { Name: 'v1' }, 5_000, agent);
    const mount = await pluginRequest(proxySocket, '/VolumeDriver.Mount', { Name: 'v1', ID: 'c1' }, 5_000, agent);
    const unmount = await pluginRequest(proxySocket, '/VolumeDriver.Unmount', { Name: 'v1', ID: 'c1' }, 5_000, agent);
    expect(get).toEqual({ status: 200, body: '{"Volume":{"Name":"v1"},"Err":""}' });
    expect(mount).toEqual({ status: 200, body: '{"Err":""}' });
    expect(unmount).toEqual({ status: 500, body: '{"Err":"busy"}' });
    expect(proxy.requests.map((r) => [r.path, r.body, r.status, r.connection])).toEqual([
      ['/VolumeDriver.Get', '{"Name":"v1"}', 200, 1],
      ['/VolumeDriver.Mount', '{"Name":"v1","ID":"c1"}', 200, 1],
      ['/VolumeDriver.Unmount', '{"Name":"v1","ID":"c1"}', 500, 1],
    ]);
    const [, m] = proxy.requests;
    expect((m?.end ?? 0) - (m?.start ?? 0)).toBeGreaterThanOrEqual(25); // the stand-in's 30 ms, seen at the socket
  });
});

describe('the cold run summary', () => {
  it('names each request with its latency and handler time, the Get of the mounted volume apart, and the stretches', () => {
    const run = (shift: number): RunTrace => ({
      total: 200 + shift,
      requests: [
        { endpoint: 'Get', start: 10, ms: 1, connection: 1 },
        { endpoint: 'Get', start: 20, ms: 1, connection: 1 },
        { endpoint: 'Mount', start: 30, ms: 10 + shift, connection: 1 },
        { endpoint: 'Get (mounted)', start: 150, ms: 3, connection: 1 },
        { endpoint: 'Unmount', start: 160, ms: 5, connection: 1 },
      ],
      pluginMs: [['Get', 0.5], ['Get', 0.5], ['Mount', 9 + shift], ['Get', 2], ['Unmount', 4]],
      mountSteps: [],
      unmountSteps: [],
    });
    const s = summarize([run(0), run(2), run(4)]);
    expect(s.requests).toBe('Get ×2 1.0 (handler 0.5), Mount ×1 12.0 (handler 11.0), Get (mounted) ×1 3.0 (handler 2.0), Unmount ×1 5.0 (handler 4.0)');
    expect(s.stretches).toEqual({ 'before Mount': 30, Mount: 12, 'Mount to Unmount': 118, Unmount: 5, 'after Unmount': 37, total: 202 });
  });
});
