// The thin binding: every protocol path maps to one handler; bodies are parsed leniently (Docker sends no Content-Type).
// hono/tiny: the smallest router; a handful of fixed POST routes needs nothing more.
import { Hono } from 'hono/tiny';
import { bodyLimit } from 'hono/body-limit';
import type { MiddlewareHandler } from 'hono';
import { ENDPOINTS } from '../handlers/index.js';
import type { Deps } from '../handlers/types.js';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.1+json';
const MAX_BODY_BYTES = 1024 * 1024;

function reply(body: object, status: 200 | 400 | 404 | 413 | 500): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': CONTENT_TYPE } });
}

function parseBody(text: string): { ok: true; value: unknown } | { ok: false } {
  if (text.trim() === '') return { ok: true, value: {} }; // Activate (and some clients) send no body at all
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/**
 * Refuses bodies over MAX_BODY_BYTES. A declared Content-Length (dockerd always sends one) is checked from the header
 * alone: hono's bodyLimit would first read `c.req.raw.body`, which turns @hono/node-server's lightweight request into
 * a full web Request and stream (about 0.15 ms on every call). Bodies of unknown length still go through bodyLimit.
 */
function limitBody(): MiddlewareHandler {
  const tooLarge = () => reply({ Err: `request body is larger than ${MAX_BODY_BYTES} bytes` }, 413);
  const streamed = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });
  return async (c, next) => {
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined && /^[0-9]+$/.test(length)) {
      if (Number(length) > MAX_BODY_BYTES) return tooLarge();
      return next();
    }
    return streamed(c, next);
  };
}

export function createApp(deps: Deps): Hono {
  const app = new Hono();
  app.use('*', limitBody());
  for (const [route, handler] of Object.entries(ENDPOINTS)) {
    app.post(route, async (c) => {
      const started = performance.now();
      const parsed = parseBody(await c.req.text());
      if (!parsed.ok) {
        deps.log.error(`${route}: request body is not valid JSON`);
        return reply({ Err: 'request body is not valid JSON' }, 400);
      }
      const result = await handler(parsed.value, deps);
      const err = 'Err' in result && typeof result.Err === 'string' ? result.Err : '';
      if (deps.config.debug) {
        // Built only when wanted: this path runs for every `docker volume ls` and `inspect`.
        deps.log.debug(`${route} ${describeRequest(parsed.value)} -> ${err === '' ? 'ok' : `Err: ${err}`} (${(performance.now() - started).toFixed(1)} ms)`);
      }
      return reply(result, err === '' ? 200 : 500);
    });
  }
  app.notFound((c) => reply({ Err: `unknown endpoint ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error) => {
    deps.log.error(`unexpected error: ${error.message}`);
    return reply({ Err: `internal error in the sshfs plugin: ${error.message}` }, 500);
  });
  return app;
}

/** Names what a request is about for the debug log, without option values (they may hold secrets). */
function describeRequest(body: unknown): string {
  if (body === null || typeof body !== 'object') return '';
  const { Name, ID, Opts } = body as { Name?: unknown; ID?: unknown; Opts?: unknown };
  const parts: string[] = [];
  if (typeof Name === 'string') parts.push(`Name=${JSON.stringify(Name.slice(0, 80))}`);
  if (typeof ID === 'string') parts.push(`ID=${ID.slice(0, 12)}`);
  if (Opts !== null && typeof Opts === 'object') parts.push(`Opts keys=[${Object.keys(Opts).slice(0, 40).join(',')}]`);
  return parts.join(' ');
}
