// Serves the CSI services over gRPC on a Unix socket (CSI_ENDPOINT), and stops gracefully.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { loadPackageDefinition, Server, ServerCredentials, status, type GrpcObject, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../../handlers/types.js';
import { removeStaleSocket } from '../host/unix-socket.js';
import { unary, type Method } from './rpc.js';
import { csiPackage } from './schema.js';

/** Each service's methods, and the code a handler's refusal is answered with in each. */
export interface CsiServices {
  Identity: Record<string, Method>;
  Controller: Record<string, Method>;
  Node: Record<string, Method>;
}

const REFUSED: Record<keyof CsiServices, status> = {
  Identity: status.FAILED_PRECONDITION,
  Controller: status.INVALID_ARGUMENT,
  Node: status.FAILED_PRECONDITION,
};

export interface RunningCsiServer {
  /** Stops accepting calls; calls in flight finish for at most graceMs, then are cut. Returns whether any were cut. */
  close(graceMs: number): Promise<{ cut: boolean }>;
}

/** `unix:///path`, `unix:/path` or a plain path: the socket's path. */
export function socketPathOf(endpoint: string): string {
  const path = endpoint.replace(/^unix:(\/\/)?/, '');
  if (!path.startsWith('/')) throw new Error(`CSI_ENDPOINT must be a Unix socket path (unix:///path or /path), not "${endpoint}"`);
  return path;
}

export function csiDefinitions(): Record<keyof CsiServices, ServiceDefinition> {
  const v1 = (loadPackageDefinition(csiPackage()).csi as GrpcObject).v1 as GrpcObject;
  const service = (name: keyof CsiServices) => (v1[name] as unknown as { service: ServiceDefinition }).service;
  return { Identity: service('Identity'), Controller: service('Controller'), Node: service('Node') };
}

export async function serveCsi(services: CsiServices, socketPath: string, log: Logger): Promise<RunningCsiServer> {
  await mkdir(dirname(socketPath), { recursive: true });
  await removeStaleSocket(socketPath);
  const server = new Server();
  const definitions = csiDefinitions();
  for (const name of Object.keys(services) as (keyof CsiServices)[]) {
    const implementation: UntypedServiceImplementation = {};
    for (const [method, fn] of Object.entries(services[name])) implementation[method] = unary(method, fn, log, REFUSED[name]);
    server.addService(definitions[name], implementation);
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
  );
  return {
    close: (graceMs) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve({ cut: true });
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve({ cut: false });
        });
      }),
  };
}
