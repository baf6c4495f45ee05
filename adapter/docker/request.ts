// Validates request bodies into the protocol's request types: Docker sends well-formed JSON, but the socket accepts
// anything.
import { UserError } from '../../handlers/errors.js';
import { printable } from '../../handlers/options.js';
import type { CreateRequest, EmptyRequest, MountRequest, NameRequest } from '../../handlers/protocol.js';

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new UserError('request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function volumeName(body: unknown): string {
  const name = asObject(body).Name;
  if (typeof name !== 'string' || name === '') throw new UserError('request needs a Name (a string)');
  if (!VOLUME_NAME.test(name)) {
    throw new UserError(
      `volume name "${printable(name)}" is not valid: use letters, digits and _ . - (starting with a letter or digit, at most 255)`,
    );
  }
  return name;
}

export function nameRequest(body: unknown): NameRequest {
  return { Name: volumeName(body) };
}

export function mountRequest(body: unknown): MountRequest {
  const name = volumeName(body);
  const id = asObject(body).ID;
  if (typeof id !== 'string' || id === '' || id.length > 256) throw new UserError('request needs an ID (a string of 1 to 256 characters)');
  return { Name: name, ID: id };
}

export function createRequest(body: unknown): CreateRequest {
  const name = volumeName(body);
  const opts = asObject(body).Opts;
  if (opts === undefined || opts === null) return { Name: name, Opts: {} };
  if (typeof opts !== 'object' || Array.isArray(opts)) throw new UserError('Opts must be an object of strings');
  // No prototype: an option named "__proto__" stays an own key (then refused as unknown) instead of being dropped.
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(opts as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new UserError(`option ${printable(k)} must be a string`);
    out[k] = v;
  }
  return { Name: name, Opts: out };
}

/** Activate, Capabilities and List read nothing from their body. */
export function emptyRequest(_body: unknown): EmptyRequest {
  return {};
}
