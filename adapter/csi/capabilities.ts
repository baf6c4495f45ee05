// What a volume capability may ask: a filesystem (never a block device), in any access mode sshfs can give. The
// remote directory is reachable from every node, so every mode is served; a read-only use is the service's own
// `readonly` mount option, which Docker applies to its bind.
import { status } from '@grpc/grpc-js';
import { RpcError } from './rpc.js';

export function checkCapability(capability: unknown): void {
  if (capability === null || typeof capability !== 'object') return;
  const { block, access_type } = capability as { block?: unknown; access_type?: unknown };
  if (access_type === 'block' || (block !== null && block !== undefined)) {
    throw new RpcError(status.INVALID_ARGUMENT, 'an sshfs volume is a filesystem, not a block device: use docker volume create --type mount');
  }
}
