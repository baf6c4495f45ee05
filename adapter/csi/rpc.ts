// Binds async CSI methods to grpc-js: a thrown RpcError becomes its status code, a handler's refusal the method's
// own code, anything else INTERNAL. Logs name the method and volume only: requests may carry secrets.
import { status, type sendUnaryData, type ServerUnaryCall, type UntypedHandleCall } from '@grpc/grpc-js';
import { describe } from '../../handlers/errors.js';
import type { Logger } from '../../handlers/types.js';
import { HandlerError } from './port.js';

export class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/** A CSI method: the decoded request in, the response out. */
export type Method = (request: Record<string, unknown>) => Promise<object>;

/**
 * A grpc-js unary handler for a method. `refused` is the code a handler's refusal (bad options, a volume in the way)
 * is answered with; the message is the handler's own, which says what to do.
 */
export function unary(name: string, method: Method, log: Logger, refused: status): UntypedHandleCall {
  return (call: ServerUnaryCall<Record<string, unknown>, object>, callback: sendUnaryData<object>) => {
    const about = typeof call.request.volume_id === 'string' && call.request.volume_id !== '' ? call.request.volume_id : call.request.name;
    const label = typeof about === 'string' && about !== '' ? `${name} ${JSON.stringify(about.slice(0, 80))}` : name;
    method(call.request).then(
      (response) => {
        log.debug(`${label}: ok`);
        callback(null, response);
      },
      (error: unknown) => {
        const code = error instanceof RpcError ? error.code : error instanceof HandlerError && !error.internal ? refused : status.INTERNAL;
        const message = error instanceof Error ? error.message : describe(error);
        log.error(`${label}: ${status[code]}: ${message}`);
        callback({ code, details: message });
      },
    );
  };
}

/** A required string field of a request. */
export function required(request: Record<string, unknown>, field: string): string {
  const value = request[field];
  if (typeof value !== 'string' || value === '') throw new RpcError(status.INVALID_ARGUMENT, `${field} is required`);
  return value;
}

/** A map<string,string> field of a request (absent: empty), as a null-prototype object. */
export function stringMap(request: Record<string, unknown>, field: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const value = request[field];
  if (value === null || typeof value !== 'object') return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}
