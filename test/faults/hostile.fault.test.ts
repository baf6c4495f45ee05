// Hostile input on the plugin socket: malformed JSON, wrong types, huge bodies, odd names and odd option values, to
// every endpoint (fast-check plus a fixed corpus). Each must get a JSON answer with a clear Err (List, Capabilities and
// Activate take no input and may answer normally), the plugin must stay up, and its state must not change.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { pluginRequest } from '../e2e/harness.js';
import { measured, useFaultPlugin } from './lib.js';

// A fixed seed keeps CI deterministic; FC_SEED=<n> explores other inputs (a failure prints the seed to rerun).
const FC_SEED = Number(process.env.FC_SEED ?? 20261128);

const NAME_ENDPOINTS = ['Create', 'Remove', 'Mount', 'Unmount', 'Path', 'Get'].map((e) => `/VolumeDriver.${e}`);
const FREE_ENDPOINTS = ['/VolumeDriver.List', '/VolumeDriver.Capabilities', '/Plugin.Activate'];
const EXISTING = 'hostile-existing';

/** Names that are not valid volume names, or valid but unknown (the existing one is only used where harmless). */
const oddName = fc.oneof(
  fc.constantFrom('', '..', '.', '../etc', 'a/b', '/abs', 'a\\b', '-rf', '.hidden', 'a b', 'a\nb', 'é', '名前', '💥', 'a'.repeat(256), 'x'.repeat(10_000), 'a\u0000b'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).map((s) => `${s}/..`),
  fc.string({ unit: 'binary', maxLength: 300 }),
);
const wrongType = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth: 1 }), fc.double());
/** Option sets that must be refused: each holds at least one bad entry. */
const badEntry = fc.oneof(
  fc.constantFrom<[string, unknown]>(
    ['ProxyCommand', 'touch /tmp/pwned'],
    ['ssh_command', 'sh -c id'],
    ['LocalCommand', 'id'],
    ['port', '0'],
    ['port', '65536'],
    ['port', '22,allow_root'],
    ['port', ''],
    ['sshcmd', '-oProxyCommand=id:/x'],
    ['sshcmd', 'u@-host:/x'],
    ['sshcmd', 'nocolon'],
    ['sshcmd', 'u@h:/x\n-o ProxyCommand=id'],
    ['IdentityFile', '/keys/../etc/shadow'],
    ['IdentityFile', 'relative'],
    ['IdentityFile', '/a,b'],
    ['uid', '-1'],
    ['umask', '999'],
    ['Ciphers', 'aes128-ctr,ProxyCommand=x'],
    ['StrictHostKeyChecking', 'no'],
    ['ro', 'maybe'],
    ['key', 'not a key'],
    ['password', ''],
    ['idmap', 'file'],
    ['max_conns', '1e3'],
  ),
  fc.tuple(fc.string({ minLength: 1, maxLength: 30 }).filter((k) => !/^[a-z_]+$/i.test(k)), fc.string()),
  fc.tuple(fc.constantFrom('sshcmd', 'port', 'password', 'uid', 'ro'), wrongType),
);
const badOpts = fc.tuple(badEntry, fc.dictionary(fc.constantFrom('Compression', 'ro', 'cache'), fc.constantFrom('yes', 'no'), { maxKeys: 2 })).map(
  ([[k, v], rest]) => ({ sshcmd: 'u@127.0.0.1:/srv', ...rest, [k]: v }),
);

const body = fc.oneof(
  // malformed JSON text
  fc.constantFrom('{', '{"Name":', '[1,2', 'nul', '{"Name":"a",}', '\u0000', '{"Name":"a"}{"Name":"b"}', 'NaN', '"just a string"', '{}}'),
  fc.string({ maxLength: 200 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return s.trim() !== '';
    }
  }),
  // well-formed JSON with wrong shapes or odd names
  wrongType.map((v) => JSON.stringify(v)),
  fc.record({ Name: oddName }).map((v) => JSON.stringify(v)),
  fc.record({ Name: wrongType }).map((v) => JSON.stringify(v)),
  fc.record({ Name: oddName, ID: fc.oneof(fc.string({ maxLength: 300 }), wrongType), Opts: fc.oneof(badOpts, wrongType) }).map((v) => JSON.stringify(v)),
  // a valid new name with options that must be refused (Create), or unknown to the plugin (other endpoints)
  fc.record({ Name: fc.stringMatching(/^h[a-z0-9]{1,20}$/), Opts: fc.oneof(badOpts, wrongType), ID: fc.oneof(fc.constant('id'), wrongType) }).map((v) => JSON.stringify(v)),
);

/** The state directory's files and their hashes: must be identical before and after. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = path.join(d, entry);
      const st = statSync(p);
      if (st.isDirectory()) {
        out[`${path.relative(dir, p)}/`] = '';
        walk(p);
      } else if (st.isSocket()) out[path.relative(dir, p)] = 'socket'; // the instance lock: no content
      else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16);
    }
  };
  walk(dir);
  return out;
}

/** POST with a chunked body (no Content-Length), as a client streaming a huge request would. */
function chunkedPost(urlPath: string, bytes: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: plugin.socketPath, path: urlPath, method: 'POST', headers: { Host: '', 'Transfer-Encoding': 'chunked' }, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

const { plugin } = useFaultPlugin({
  afterCleanup: () => pluginRequest(plugin.socketPath, '/VolumeDriver.Remove', { Name: EXISTING }).catch(() => undefined),
});

beforeAll(async () => {
  const r = JSON.parse((await pluginRequest(plugin.socketPath, '/VolumeDriver.Create', { Name: EXISTING, Opts: { sshcmd: 'u@127.0.0.1:/srv' } })).body) as { Err: string };
  expect(r.Err).toBe('');
});

it('answers every hostile request with a JSON Err, stays up, and leaves its state unchanged', async () => {
  await measured('hostile input on every endpoint (fast-check + corpus)', import.meta.url, async (row) => {
    const before = snapshot(plugin.stateDir);
    const mountsBefore = readdirSync(plugin.mountRoot);
    const failures: string[] = [];
    let requests = 0;
    const kinds: Record<string, number> = {};
    const check = async (endpoint: string, payload: string, status: number, text: string) => {
      requests += 1;
      row.trials += 1;
      let parsed: { Err?: unknown } | undefined;
      try {
        parsed = JSON.parse(text) as { Err?: unknown };
      } catch {
        failures.push(`${endpoint} ${payload.slice(0, 60)} -> not JSON: ${text.slice(0, 80)}`);
        return;
      }
      const malformed = (() => {
        try {
          JSON.parse(payload);
          return false;
        } catch {
          return payload.trim() !== '';
        }
      })();
      const needsErr = NAME_ENDPOINTS.includes(endpoint) || malformed || !endpoint.startsWith('/');
      const err = parsed?.Err;
      const kind =
        typeof err !== 'string' || err === ''
          ? 'no Err (input-free endpoint)'
          : /not valid JSON/.test(err)
            ? 'malformed JSON'
            : /larger than/.test(err)
              ? 'too large'
              : /volume name|needs a Name|needs an ID|JSON object/.test(err)
                ? 'bad name/ID/shape'
                : /no such volume/.test(err)
                  ? 'unknown volume'
                  : /unknown endpoint/.test(err)
                    ? 'unknown endpoint'
                    : /option|Opts|sshcmd|give only one/i.test(err)
                      ? 'bad options'
                      : 'other';
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      if (needsErr && (typeof err !== 'string' || err === '')) {
        failures.push(`${endpoint} ${payload.slice(0, 60)} -> ${status} without Err: ${text.slice(0, 80)}`);
        return;
      }
      if (typeof err === 'string' && /internal error/i.test(err)) {
        failures.push(`${endpoint} ${payload.slice(0, 60)} -> internal error: ${err.slice(0, 120)}`);
        return;
      }
      row.passed += 1;
    };
    const t0 = performance.now();
    // The property: any endpoint (and unknown ones), any hostile body.
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...NAME_ENDPOINTS, ...FREE_ENDPOINTS, '/VolumeDriver.Nope', '/../etc/passwd', '/'), body, async (endpoint, payload) => {
        const r = await pluginRequest(plugin.socketPath, endpoint, payload, 10_000);
        await check(endpoint, payload, r.status, r.body);
        return true;
      }),
      { numRuns: 1500, seed: FC_SEED },
    );
    // Odd option values on Create with a valid new name: only the options can make it fail, and they must.
    await fc.assert(
      fc.asyncProperty(fc.stringMatching(/^h[a-z0-9]{1,20}$/), badOpts, async (Name, Opts) => {
        const payload = JSON.stringify({ Name, Opts });
        const r = await pluginRequest(plugin.socketPath, '/VolumeDriver.Create', payload, 10_000);
        await check('/VolumeDriver.Create', payload, r.status, r.body);
        return true;
      }),
      { numRuns: 400, seed: FC_SEED },
    );
    // Huge bodies: 2 MiB with a Content-Length, and 8 MiB streamed without one.
    const huge = JSON.stringify({ Name: 'a'.repeat(2 * 1024 * 1024) });
    for (const endpoint of NAME_ENDPOINTS) {
      const r = await pluginRequest(plugin.socketPath, endpoint, huge, 30_000);
      await check(endpoint, '{huge}', r.status, r.body);
    }
    for (const endpoint of ['/VolumeDriver.Create', '/VolumeDriver.List']) {
      const r = await chunkedPost(endpoint, 8 * 1024 * 1024);
      await check(endpoint, '<8 MiB chunked>', r.status, r.body);
      if (!/larger than/.test(r.body)) failures.push(`${endpoint} 8 MiB chunked -> ${r.status} ${r.body.slice(0, 80)}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    // Still up and still the same.
    const activate = await pluginRequest(plugin.socketPath, '/Plugin.Activate', undefined, 5_000);
    const after = snapshot(plugin.stateDir);
    row.figures['requests / seconds'] = `${requests} / ${seconds.toFixed(1)}`;
    row.figures['answers without a clear Err'] = failures.length;
    row.figures['answers by kind'] = Object.entries(kinds).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
    row.figures['plugin still up'] = plugin.running() && activate.status === 200 ? 'yes' : 'NO';
    row.figures['state dir changed'] = JSON.stringify(after) === JSON.stringify(before) ? 'no' : 'YES';
    row.figures['entries under the mount root'] = `${mountsBefore.length} -> ${readdirSync(plugin.mountRoot).length}`;
    expect(failures.slice(0, 10)).toEqual([]);
    expect(plugin.running()).toBe(true);
    expect(activate.status).toBe(200);
    expect(after).toEqual(before);
    expect(readdirSync(plugin.mountRoot)).toEqual(mountsBefore);
  });
});
