// CSI Controller: CreateVolume and DeleteVolume over the same handlers as VolumeDriver.Create and .Remove. The
// volume's id is its name; its context is the non-secret parameters, so a node that never saw the CreateVolume can
// create the same volume when it is published there (node.ts).
import { status } from '@grpc/grpc-js';
import type { Logger } from '../../handlers/types.js';
import { checkCapability } from './capabilities.js';
import { driverOptions } from './options.js';
import { HandlerError, type VolumePort } from './port.js';
import { required, RpcError, stringMap, type Method } from './rpc.js';

export function controllerService(port: VolumePort, log: Logger): Record<'CreateVolume' | 'DeleteVolume' | 'ControllerGetCapabilities', Method> {
  return {
    async CreateVolume(request) {
      const name = required(request, 'name');
      const capabilities = Array.isArray(request.volume_capabilities) ? request.volume_capabilities : [];
      for (const capability of capabilities) checkCapability(capability);
      const parameters = stringMap(request, 'parameters');
      const options = driverOptions(parameters, stringMap(request, 'secrets'));
      try {
        await port.create(name, options);
      } catch (error) {
        if (error instanceof HandlerError && /already exists/.test(error.message)) throw new RpcError(status.ALREADY_EXISTS, error.message);
        throw error;
      }
      log.info(`CreateVolume ${name}: created (options: ${Object.keys(options).sort().join(', ')})`);
      return { volume: { volume_id: name, capacity_bytes: '0', volume_context: { ...parameters } } };
    },
    async DeleteVolume(request) {
      const name = required(request, 'volume_id');
      // Deleting a volume that is already gone succeeds: Swarm retries a DeleteVolume whose answer it lost.
      if ((await port.options(name)) === undefined) return {};
      try {
        await port.remove(name);
      } catch (error) {
        // e.g. something else mounted on its mountpoint: the state of the node, not the request, is what is wrong.
        if (error instanceof HandlerError && !error.internal) throw new RpcError(status.FAILED_PRECONDITION, error.message);
        throw error;
      }
      return {};
    },
    async ControllerGetCapabilities() {
      return { capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }] };
    },
  };
}
