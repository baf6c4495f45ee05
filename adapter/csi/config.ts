// The CSI plugin's configuration: the VolumeDriver plugin's (state, keys, timeouts...) plus the socket Swarm calls
// (CSI_ENDPOINT), where Swarm publishes (PUBLISH_ROOT) and the node id it is told (NODE_ID).
import { hostname } from 'node:os';
import { posix } from 'node:path';
import { readConfig, type PluginConfig } from '../config.js';
import { socketPathOf } from './server.js';

export interface CsiConfig extends PluginConfig {
  publishRoot: string;
  nodeId: string;
}

export function readCsiConfig(env: NodeJS.ProcessEnv = process.env): CsiConfig {
  const endpoint = env.CSI_ENDPOINT ?? '';
  if (endpoint === '') throw new Error('CSI_ENDPOINT must name the socket to serve (e.g. unix:///run/docker/plugins/sshfs-csi.sock)');
  const publishRoot = posix.normalize(env.PUBLISH_ROOT || '/data/published').replace(/\/+$/, '');
  const config = readConfig({ MOUNT_ROOT: `${publishRoot}/.mounts`, ...env, SOCKET_PATH: socketPathOf(endpoint) });
  // Targets link to mountpoints, and a link resolves on the host only within the propagated directory; a dot name
  // can never be a target (Swarm's ids are letters and digits).
  const inside = posix.relative(publishRoot, config.mountRoot).split('/')[0] ?? '';
  if (!posix.isAbsolute(publishRoot) || !inside.startsWith('.') || inside === '..' || inside === '.') {
    throw new Error(`MOUNT_ROOT (${config.mountRoot}) must lie in a dot directory of PUBLISH_ROOT (${publishRoot}), e.g. ${publishRoot}/.mounts`);
  }
  const nodeId = (env.NODE_ID || hostname()).trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(nodeId)) throw new Error(`NODE_ID must be letters, digits and _ . - (at most 128), not "${nodeId}"`);
  return { ...config, publishRoot, nodeId };
}
