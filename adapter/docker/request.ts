// Validates request bodies into the domain's requests (handlers/requests.ts): Docker sends well-formed JSON, but the
// socket accepts anything.
import { UserError } from '../../handlers/errors.js';
import { printable } from '../../handlers/options.js';
import { checkVolumeName, type CreateRequest, type ReferenceRequest, type VolumeRequest } from '../../handlers/requests.js';
import type { EmptyRequest } from './protocol.js';

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new UserError('request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function volumeName(body: unknown): string {
  const name = asObject(body).Name;
  if (typeof name !== 'string' || name === '') throw new UserError('request needs a Name (a string)');
  return checkVolumeName(name);
}

export function nameRequest(body: unknown): VolumeRequest {
  return { name: volumeName(body) };
}

export function mountRequest(body: unknown): ReferenceRequest {
  const name = volumeName(body);
  const id = asObject(body).ID;
  if (typeof id !== 'string' || id === '' || id.length > 256) throw new UserError('request needs an ID (a string of 1 to 256 characters)');
  return { name, ref: id };
}

export function createRequest(body: unknown): CreateRequest {
  const name = volumeName(body);
  const opts = asObject(body).Opts;
  if (opts === undefined || opts === null) return { name, options: {} };
  if (typeof opts !== 'object' || Array.isArray(opts)) throw new UserError('Opts must be an object of strings');
  // No prototype: an option named "__proto__" stays an own key (then refused as unknown) instead of being dropped.
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(opts as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new UserError(`option ${printable(k)} must be a string`);
    out[k] = v;
  }
  return { name, options: out };
}

/** Activate, Capabilities and List read nothing from their body. */
export function emptyRequest(_body: unknown): EmptyRequest {
  return {};
}
