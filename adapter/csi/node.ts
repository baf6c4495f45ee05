// CSI Node: NodePublishVolume mounts the volume (VolumeDriver.Mount's handler, one reference per target, named
// `csi:<target>`) and links the target to its mountpoint; NodeUnpublishVolume removes the link and releases the
// reference. No staging: a publish is a mount, shared by every task of the node.
import { status } from '@grpc/grpc-js';
import { posix } from 'node:path';
import { createKeyedLock } from '../../handlers/keyed-lock.js';
import type { Logger } from '../../handlers/types.js';
import { checkCapability } from './capabilities.js';
import { driverOptions } from './options.js';
import { HandlerError, type VolumePort } from './port.js';
import { required, RpcError, stringMap, type Method } from './rpc.js';
import { linkTarget, targetName, unlinkTarget } from './targets.js';

export interface NodeSettings {
  /** What NodeGetInfo reports: the id Swarm maps this node to. */
  nodeId: string;
  /** Where Swarm publishes (the plugin's propagated mount). */
  publishRoot: string;
}

/** The reference a publish target holds on its volume. */
export const referenceFor = (target: string) => `csi:${target}`;

export function nodeService(
  port: VolumePort,
  settings: NodeSettings,
  log: Logger,
): Record<'NodePublishVolume' | 'NodeUnpublishVolume' | 'NodeGetCapabilities' | 'NodeGetInfo', Method> {
  // Per target: a publish and an unpublish of one target never interleave (the handlers lock per volume inside).
  const targets = createKeyedLock();
  return {
    async NodePublishVolume(request) {
      const name = required(request, 'volume_id');
      const target = required(request, 'target_path');
      const id = targetName(settings.publishRoot, target);
      checkCapability(request.volume_capability);
      if (request.readonly === true) {
        throw new RpcError(status.INVALID_ARGUMENT, 'publishing read-only is not supported: mount the volume with readonly in the service (--mount ...,readonly)');
      }
      const options = driverOptions(stringMap(request, 'volume_context'), stringMap(request, 'secrets'));
      return targets.withLock(target, async () => {
        await ensureVolume(port, name, options, log);
        const ref = referenceFor(id);
        const held = await port.held(name, ref);
        // Mount's handler also re-mounts a volume whose sshfs died; a target keeps one reference however often it is published.
        const mountpoint = await port.acquire(name, ref);
        if (held > 0) await port.release(name, ref);
        try {
          await linkTarget(target, mountpoint);
        } catch (error) {
          if (held === 0) await port.release(name, ref).catch(() => undefined);
          throw error;
        }
        log.info(`NodePublishVolume ${name}: mounted at ${mountpoint}, published at ${target}`);
        return {};
      });
    },
    async NodeUnpublishVolume(request) {
      const name = required(request, 'volume_id');
      const target = required(request, 'target_path');
      const id = targetName(settings.publishRoot, target);
      return targets.withLock(target, async () => {
        const link = await unlinkTarget(target);
        if (link === 'kept') log.error(`NodeUnpublishVolume ${name}: ${target} is not the plugin's link; left as it is`);
        if ((await port.options(name)) !== undefined) await port.release(name, referenceFor(id));
        log.info(`NodeUnpublishVolume ${name}: ${target} unpublished`);
        return {};
      });
    },
    async NodeGetCapabilities() {
      return { capabilities: [] };
    },
    async NodeGetInfo() {
      return { node_id: settings.nodeId, max_volumes_per_node: '0' };
    },
  };
}

/**
 * The volume on this node: created from the publish's context and secrets when this node never saw it (CreateVolume
 * ran on a manager). A record left from an earlier volume of the same name (DeleteVolume runs on the manager only)
 * is replaced when nothing here uses it.
 */
async function ensureVolume(port: VolumePort, name: string, options: Record<string, string>, log: Logger): Promise<void> {
  if (Object.keys(options).length === 0) {
    if ((await port.options(name)) !== undefined) return;
    throw new RpcError(status.NOT_FOUND, `volume ${name} is not known on this node and the request carries no options to create it`);
  }
  try {
    await port.create(name, options);
  } catch (error) {
    if (!(error instanceof HandlerError) || !/already exists/.test(error.message)) throw error;
    const refs = (await port.references()).find((v) => v.name === name)?.refs ?? [];
    if (refs.length > 0) {
      throw new RpcError(status.FAILED_PRECONDITION, `volume ${name} on this node has other options and is in use (${refs.length} reference(s)); unpublish it first`);
    }
    log.info(`volume ${name}: this node's record had other options (an earlier volume of that name); replaced`);
    await port.remove(name);
    await port.create(name, options);
  }
}

/** Publish targets of every volume (from the references the store keeps), for the restore after a restart. */
export async function publications(port: VolumePort, publishRoot: string): Promise<{ name: string; ref: string; target: string }[]> {
  const out: { name: string; ref: string; target: string }[] = [];
  for (const { name, refs } of await port.references()) {
    for (const ref of refs) if (ref.startsWith('csi:')) out.push({ name, ref, target: posix.join(publishRoot, ref.slice(4)) });
  }
  return out;
}
