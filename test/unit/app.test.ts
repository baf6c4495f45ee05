import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import { createApp, RETRY_WITHOUT_BODY } from '../../adapter/docker/app.js';
import { listenOnSocket } from '../../adapter/docker/server.js';
import { pluginRequest } from '../../scripts/lib/plugin-request.js';
import { makeDeps } from './fixtures.js';

// Requests as dockerd sends them: POST, no Content-Type, empty Host.
async function post(app: ReturnType<typeof createApp>, route: string, body?: string) {
  const res = await app.request(route, { method: 'POST', ...(body !== undefined ? { body } : {}) });
  return { status: res.status, type: res.headers.get('content-type'), json: (await res.json()) as Record<string, unknown> };
}

describe('Hono adapter', () => {
  it('answers Activate with an empty body', async () => {
    const r = await post(createApp(makeDeps()), '/Plugin.Activate');
    expect(r).toEqual({ status: 200, type: 'application/vnd.docker.plugins.v1.1+json', json: { Implements: ['VolumeDriver'] } });
  });

  it('routes every endpoint to its handler', async () => {
    const deps = makeDeps();
    const app = createApp(deps);
    expect((await post(app, '/VolumeDriver.Create', JSON.stringify({ Name: 'v', Opts: { sshcmd: 'u@h:/p' } }))).json).toEqual({ Err: '' });
    expect((await post(app, '/VolumeDriver.Mount', '{"Name":"v","ID":"x"}')).json).toEqual({ Mountpoint: '/mnt/volumes/v', Err: '' });
    expect((await post(app, '/VolumeDriver.Path', '{"Name":"v"}')).json).toEqual({ Mountpoint: '/mnt/volumes/v', Err: '' });
    expect((await post(app, '/VolumeDriver.List', '{}')).json).toEqual({ Volumes: [{ Name: 'v', Mountpoint: '/mnt/volumes/v' }], Err: '' });
    expect((await post(app, '/VolumeDriver.Get', '{"Name":"v"}')).json.Volume).toMatchObject({ Name: 'v' });
    expect((await post(app, '/VolumeDriver.Unmount', '{"Name":"v","ID":"x"}')).json).toEqual({ Err: '' });
    expect((await post(app, '/VolumeDriver.Remove', '{"Name":"v"}')).json).toEqual({ Err: '' });
    expect((await post(app, '/VolumeDriver.Capabilities', '{}')).json).toEqual({ Capabilities: { Scope: 'local' } });
  });

  it('turns handler errors into Err with status 500', async () => {
    const r = await post(createApp(makeDeps()), '/VolumeDriver.Get', '{"Name":"ghost"}');
    expect(r).toMatchObject({ status: 500, json: { Volume: null, Err: 'no such volume: ghost' } });
  });

  it.each([
    ['malformed JSON', '/VolumeDriver.Create', '{"Name":', 400, /not valid JSON/],
    ['wrong types', '/VolumeDriver.Create', '{"Name":["a"]}', 500, /needs a Name/],
    ['a JSON array', '/VolumeDriver.Mount', '[1,2]', 500, /must be a JSON object/],
    ['a huge body', '/VolumeDriver.Create', JSON.stringify({ Name: 'v', Opts: { sshcmd: 'x'.repeat(2_000_000) } }), 413, /larger than/],
    ['an unknown endpoint', '/VolumeDriver.Explode', '{}', 404, /unknown endpoint/],
  ])('answers %s with a clear Err and changes nothing', async (_label, route, body, status, message) => {
    const deps = makeDeps();
    const r = await post(createApp(deps), route, body);
    expect(r.status).toBe(status);
    expect(String(r.json.Err)).toMatch(message);
    expect(await deps.store.list()).toEqual([]);
  });

  it('logs one line per request at debug, never option values', async () => {
    const deps = makeDeps();
    await post(createApp(deps, { debug: true }), '/VolumeDriver.Create', JSON.stringify({ Name: 'v', Opts: { sshcmd: 'u@h:/p', password: 'hunter2' } }));
    const lines = deps.logs.filter((l) => l.startsWith('debug /VolumeDriver.Create'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/Name="v" Opts keys=\[sshcmd,password\] -> ok/);
    expect(deps.logs.join('\n')).not.toContain('hunter2');
  });
});

describe('Hono adapter on a real Unix socket', () => {
  // Over @hono/node-server, as dockerd reaches it: the body limit must hold whether the length is declared or not.
  async function serve() {
    const deps = makeDeps();
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-app-'));
    const socketPath = join(dir, 'p.sock');
    const server = await listenOnSocket(createApp(deps), socketPath);
    const send = (headers: Record<string, string | number>, chunks: string[]) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ socketPath, path: '/VolumeDriver.Create', method: 'POST', headers: { Host: '', ...headers } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        for (const c of chunks) req.write(c);
        req.end();
      });
    return { deps, send, close: () => server.close() };
  }

  const body = (size: number) => JSON.stringify({ Name: 'v', Opts: { sshcmd: `u@h:/${'x'.repeat(size)}` } });

  it('serves a request with a declared Content-Length', async () => {
    const s = await serve();
    const b = body(10);
    expect(await s.send({ 'Content-Length': Buffer.byteLength(b) }, [b])).toEqual({ status: 200, body: '{"Err":""}' });
    expect((await s.deps.store.list()).map((r) => r.name)).toEqual(['v']);
    await s.close();
  });

  it('refuses a declared Content-Length over 1 MiB from the header, before reading the body', async () => {
    const s = await serve();
    const r = await s.send({ 'Content-Length': 2_000_000 }, ['{"Name":"v"']); // the rest never comes
    expect(r.status).toBe(413);
    expect(r.body).toMatch(/larger than 1048576 bytes/);
    expect(await s.deps.store.list()).toEqual([]);
    await s.close();
  });

  it('refuses a chunked body (no declared length) once it passes 1 MiB', async () => {
    const s = await serve();
    const b = body(2_000_000);
    const r = await s.send({ 'Transfer-Encoding': 'chunked' }, [b.slice(0, 1_000_000), b.slice(1_000_000)]);
    expect(r.status).toBe(413);
    expect(await s.deps.store.list()).toEqual([]);
    const small = body(10);
    expect((await s.send({ 'Transfer-Encoding': 'chunked' }, [small.slice(0, 5), small.slice(5)])).status).toBe(200);
    await s.close();
  });
});

describe('a request dockerd retried without its body', () => {
  // dockerd re-sends a request whose connection was cut with an EMPTY body: it cannot be told which volume it is about.
  it.each(['Create', 'Remove', 'Mount', 'Unmount', 'Path'])('%s: a clear Err, nothing changed, and a log line saying why', async (method) => {
    const deps = makeDeps();
    const app = createApp(deps);
    await post(app, '/VolumeDriver.Create', JSON.stringify({ Name: 'v', Opts: { sshcmd: 'u@h:/p' } }));
    await post(app, '/VolumeDriver.Mount', '{"Name":"v","ID":"x"}');
    const before = JSON.stringify(await deps.store.list());
    const calls = deps.runner.calls.length;
    const r = await post(app, `/VolumeDriver.${method}`, '');
    expect(r.status).toBe(500);
    expect(r.json.Err).toBe(RETRY_WITHOUT_BODY);
    if (method === 'Mount' || method === 'Path') expect(r.json.Mountpoint).toBe('');
    expect(JSON.stringify(await deps.store.list())).toBe(before);
    expect(deps.runner.calls.length).toBe(calls);
    expect(deps.logs.join('\n')).toMatch(new RegExp(`error /VolumeDriver.${method} without a body \\(dockerd retried a request cut`));
  });

  it('Get: the connection is closed unanswered, so dockerd keeps its record of the volume (an Err would drop it)', async () => {
    const deps = makeDeps();
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-app-'));
    const socketPath = join(dir, 'p.sock');
    const server = await listenOnSocket(createApp(deps), socketPath);
    await pluginRequest(socketPath, '/VolumeDriver.Create', { Name: 'v', Opts: { sshcmd: 'u@h:/p' } });
    await expect(pluginRequest(socketPath, '/VolumeDriver.Get', undefined, 5_000)).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect(deps.logs.join('\n')).toMatch(/VolumeDriver.Get without a body .* connection closed unanswered/);
    // A real Get still answers, and the volume is still there.
    expect(JSON.parse((await pluginRequest(socketPath, '/VolumeDriver.Get', { Name: 'v' })).body)).toMatchObject({ Err: '', Volume: { Name: 'v' } });
    await server.close();
  });

  it('List and Capabilities need no body and answer as usual', async () => {
    const app = createApp(makeDeps());
    expect((await post(app, '/VolumeDriver.List', '')).json).toEqual({ Volumes: [], Err: '' });
    expect((await post(app, '/VolumeDriver.Capabilities', '')).json).toEqual({ Capabilities: { Scope: 'local' } });
  });
});

describe('graceful stop', () => {
  /** A server whose /slow answers only when the test says so. */
  async function slowServer() {
    const app = new Hono();
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (started = resolve));
    app.post('/slow', async (c) => {
      started();
      await released;
      return c.json({ Err: '' });
    });
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-stop-'));
    const socketPath = join(dir, 'p.sock');
    const server = await listenOnSocket(app, socketPath);
    return { server, socketPath, release, running };
  }

  it('stops accepting at once, lets the request in flight finish, then closes', async () => {
    const s = await slowServer();
    const inFlight = pluginRequest(s.socketPath, '/slow', { Name: 'v' }, 10_000);
    await s.running;
    const closing = s.server.close(8_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // New connections find no socket (dockerd retries those with their body intact).
    await expect(pluginRequest(s.socketPath, '/slow', {}, 2_000)).rejects.toThrow(/ENOENT|ECONNREFUSED/);
    s.release();
    expect(await inFlight).toEqual({ status: 200, body: '{"Err":""}' });
    expect(await closing).toEqual({ cut: 0, inFlightAtStop: 1 });
  });

  it('cuts what still runs when the grace period is over, and says so', async () => {
    const s = await slowServer();
    const inFlight = pluginRequest(s.socketPath, '/slow', { Name: 'v' }, 10_000);
    await s.running;
    const t0 = performance.now();
    expect(await s.server.close(300)).toEqual({ cut: 1, inFlightAtStop: 1 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    await expect(inFlight).rejects.toThrow(/socket hang up|ECONNRESET/);
    s.release();
  });

  it('closes idle keep-alive connections at once', async () => {
    const s = await slowServer();
    const agent = new http.Agent({ keepAlive: true });
    s.release();
    await pluginRequest(s.socketPath, '/slow', {}, 5_000, agent);
    const t0 = performance.now();
    expect(await s.server.close(8_000)).toEqual({ cut: 0, inFlightAtStop: 0 });
    expect(performance.now() - t0).toBeLessThan(5_000);
    agent.destroy();
  });
});
