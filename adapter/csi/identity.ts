// CSI Identity: who the plugin is and that it serves a Controller (Swarm calls CreateVolume/DeleteVolume only then).
import type { Method } from './rpc.js';

/** The plugin's CSI name (domain-name notation, at most 63 characters). */
export const CSI_PLUGIN_NAME = 'sshfs.docker-volume-sshfs.local';
export const CSI_VERSION = '0.1.0';

export function identityService(): Record<'GetPluginInfo' | 'GetPluginCapabilities' | 'Probe', Method> {
  return {
    GetPluginInfo: async () => ({ name: CSI_PLUGIN_NAME, vendor_version: CSI_VERSION, manifest: {} }),
    GetPluginCapabilities: async () => ({ capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }] }),
    // The server listens only once the state is open: whoever reaches it may call every method.
    Probe: async () => ({ ready: { value: true } }),
  };
}
