// The thin binding: every protocol path maps to one handler; bodies are parsed leniently (Docker sends no Content-Type).
// hono/tiny: the smallest router; a handful of fixed POST routes needs nothing more.
import { Hono } from 'hono/tiny';
import { bodyLimit } from 'hono/body-limit';
import type { MiddlewareHandler } from 'hono';
import { ENDPOINTS } from './routes.js';
import type { Deps } from '../../handlers/types.js';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.1+json';
const MAX_BODY_BYTES = 1024 * 1024;

function reply(body: object, status: 200 | 400 | 404 | 413 | 500 | 503): Response {
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
 * a full web Request and stream, on every call. Bodies of unknown length still go through bodyLimit.
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

/** Endpoints whose request names a volume: an empty body there is never a real request from dockerd. */
const NEEDS_BODY = new Set(['/VolumeDriver.Create', '/VolumeDriver.Remove', '/VolumeDriver.Mount', '/VolumeDriver.Unmount', '/VolumeDriver.Path', '/VolumeDriver.Get']);

export const RETRY_WITHOUT_BODY =
  'request has no body: dockerd re-sends a request without its body when the connection it first went out on was cut ' +
  '(the plugin was stopped or crashed while answering); nothing was changed: run the docker command again';

/**
 * dockerd's retry of a request cut mid-way carries an empty body, so the plugin cannot tell which volume it was about.
 * Whatever it answers must do no harm. An Err does none for Create, Remove, Mount, Path (the command fails, nothing
 * changes) and Unmount (dockerd logs it and goes on; the reference it meant to release is dropped at Remove). A Get
 * is different: dockerd treats any Err on Get as "no such volume" and, at its start, deletes that volume's record
 * (options, labels). A connection failure it keeps the record for: so a Get without a body is answered by closing the
 * connection (dockerd retries for up to 30 s, then reports a connection error and keeps the volume).
 */
function answerRetryWithoutBody(route: string, env: unknown, deps: Deps): Response {
  const method = route.slice(route.indexOf('.') + 1);
  if (method === 'Get' && dropConnection(env)) {
    deps.log.error(`${route} without a body (dockerd retried a request cut by a plugin stop or crash): connection closed unanswered, so dockerd keeps the volume`);
    return reply({ Err: RETRY_WITHOUT_BODY }, 503);
  }
  deps.log.error(
    `${route} without a body (dockerd retried a request cut by a plugin stop or crash): answered with an error, nothing changed` +
      (method === 'Unmount' ? '; the reference it was to release stays until docker volume rm drops it' : ''),
  );
  return reply(method === 'Mount' || method === 'Path' ? { Mountpoint: '', Err: RETRY_WITHOUT_BODY } : { Err: RETRY_WITHOUT_BODY }, 500);
}

/** Closes the request's connection without an answer (over @hono/node-server, whose env holds the Node request). */
function dropConnection(env: unknown): boolean {
  const socket = (env as { incoming?: { socket?: { destroy(): void } } } | undefined)?.incoming?.socket;
  if (socket === undefined) return false;
  socket.destroy();
  return true;
}

export interface AppOptions {
  /** Log one line per request (route, volume, outcome, time); never option values. */
  debug?: boolean;
}

export function createApp(deps: Deps, { debug = false }: AppOptions = {}): Hono {
  const app = new Hono();
  app.use('*', limitBody());
  for (const [route, handler] of Object.entries(ENDPOINTS)) {
    app.post(route, async (c) => {
      const started = performance.now();
      const text = await c.req.text();
      if (text.trim() === '' && NEEDS_BODY.has(route)) return answerRetryWithoutBody(route, c.env, deps);
      const parsed = parseBody(text);
      if (!parsed.ok) {
        deps.log.error(`${route}: request body is not valid JSON`);
        return reply({ Err: 'request body is not valid JSON' }, 400);
      }
      const result = await handler(parsed.value, deps);
      const err = 'Err' in result && typeof result.Err === 'string' ? result.Err : '';
      if (debug) {
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
