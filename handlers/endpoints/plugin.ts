// Endpoints about the plugin itself rather than a volume.
import type { ActivateResponse, CapabilitiesResponse, EmptyRequest } from '../protocol.js';
import type { Deps } from '../types.js';

export async function capabilities(_request: EmptyRequest, _deps: Deps): Promise<CapabilitiesResponse> {
  // Each node keeps its own mounts and state, so the volume is local to the node even though the remote is shared.
  return { Capabilities: { Scope: 'local' } };
}

export async function activate(_request: EmptyRequest, _deps: Deps): Promise<ActivateResponse> {
  return { Implements: ['VolumeDriver'] };
}
