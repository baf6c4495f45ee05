// The part of the CSI v1 gRPC API this plugin serves, described in code (protobufjs' JSON form) from the
// specification's service names, message names and field numbers: only what Swarm calls and we answer. Fields we
// never read are left out (protobuf skips unknown fields), so a request with more than this still decodes.
import { fromJSON, type PackageDefinition } from '@grpc/proto-loader';

type Field = { type: string; id: number; rule?: 'repeated'; keyType?: string };
const str = (id: number): Field => ({ type: 'string', id });
const map = (id: number): Field => ({ keyType: 'string', type: 'string', id });
const message = (fields: Record<string, Field> = {}, extra: object = {}) => ({ fields, ...extra });
/** A capability message: `oneof type { RPC rpc = 1; }` (or `Service service = 1`) whose inner message holds `Type type = 1`. */
const capability = (inner: 'RPC' | 'Service', field: 'rpc' | 'service', values: Record<string, number>) => ({
  oneofs: { type: { oneof: [field] } },
  fields: { [field]: { type: inner, id: 1 } },
  nested: { [inner]: { fields: { type: { type: 'Type', id: 1 } }, nested: { Type: { values } } } },
});
const rpc = (request: string, response: string) => ({ requestType: request, responseType: response });

const CSI_V1 = {
  Identity: {
    methods: {
      GetPluginInfo: rpc('GetPluginInfoRequest', 'GetPluginInfoResponse'),
      GetPluginCapabilities: rpc('GetPluginCapabilitiesRequest', 'GetPluginCapabilitiesResponse'),
      Probe: rpc('ProbeRequest', 'ProbeResponse'),
    },
  },
  Controller: {
    methods: {
      CreateVolume: rpc('CreateVolumeRequest', 'CreateVolumeResponse'),
      DeleteVolume: rpc('DeleteVolumeRequest', 'DeleteVolumeResponse'),
      ControllerGetCapabilities: rpc('ControllerGetCapabilitiesRequest', 'ControllerGetCapabilitiesResponse'),
    },
  },
  Node: {
    methods: {
      NodePublishVolume: rpc('NodePublishVolumeRequest', 'NodePublishVolumeResponse'),
      NodeUnpublishVolume: rpc('NodeUnpublishVolumeRequest', 'NodeUnpublishVolumeResponse'),
      NodeGetCapabilities: rpc('NodeGetCapabilitiesRequest', 'NodeGetCapabilitiesResponse'),
      NodeGetInfo: rpc('NodeGetInfoRequest', 'NodeGetInfoResponse'),
    },
  },
  GetPluginInfoRequest: message(),
  GetPluginInfoResponse: message({ name: str(1), vendor_version: str(2), manifest: map(3) }),
  GetPluginCapabilitiesRequest: message(),
  GetPluginCapabilitiesResponse: message({ capabilities: { type: 'PluginCapability', id: 1, rule: 'repeated' } }),
  PluginCapability: capability('Service', 'service', { UNKNOWN: 0, CONTROLLER_SERVICE: 1, VOLUME_ACCESSIBILITY_CONSTRAINTS: 2 }),
  ProbeRequest: message(),
  ProbeResponse: message({ ready: { type: 'google.protobuf.BoolValue', id: 1 } }),
  CreateVolumeRequest: message({
    name: str(1),
    volume_capabilities: { type: 'VolumeCapability', id: 3, rule: 'repeated' },
    parameters: map(4),
    secrets: map(5),
  }),
  CreateVolumeResponse: message({ volume: { type: 'Volume', id: 1 } }),
  Volume: message({ capacity_bytes: { type: 'int64', id: 1 }, volume_id: str(2), volume_context: map(3) }),
  VolumeCapability: {
    oneofs: { access_type: { oneof: ['block', 'mount'] } },
    fields: { block: { type: 'BlockVolume', id: 1 }, mount: { type: 'MountVolume', id: 2 }, access_mode: { type: 'AccessMode', id: 3 } },
    nested: {
      BlockVolume: message(),
      MountVolume: message({ fs_type: str(1), mount_flags: { type: 'string', id: 2, rule: 'repeated' } }),
      AccessMode: message(
        { mode: { type: 'Mode', id: 1 } },
        {
          nested: {
            Mode: {
              values: {
                UNKNOWN: 0,
                SINGLE_NODE_WRITER: 1,
                SINGLE_NODE_READER_ONLY: 2,
                MULTI_NODE_READER_ONLY: 3,
                MULTI_NODE_SINGLE_WRITER: 4,
                MULTI_NODE_MULTI_WRITER: 5,
                SINGLE_NODE_SINGLE_WRITER: 6,
                SINGLE_NODE_MULTI_WRITER: 7,
              },
            },
          },
        },
      ),
    },
  },
  DeleteVolumeRequest: message({ volume_id: str(1), secrets: map(2) }),
  DeleteVolumeResponse: message(),
  ControllerGetCapabilitiesRequest: message(),
  ControllerGetCapabilitiesResponse: message({ capabilities: { type: 'ControllerServiceCapability', id: 1, rule: 'repeated' } }),
  ControllerServiceCapability: capability('RPC', 'rpc', { UNKNOWN: 0, CREATE_DELETE_VOLUME: 1, PUBLISH_UNPUBLISH_VOLUME: 2 }),
  NodePublishVolumeRequest: message({
    volume_id: str(1),
    publish_context: map(2),
    staging_target_path: str(3),
    target_path: str(4),
    volume_capability: { type: 'VolumeCapability', id: 5 },
    readonly: { type: 'bool', id: 6 },
    secrets: map(7),
    volume_context: map(8),
  }),
  NodePublishVolumeResponse: message(),
  NodeUnpublishVolumeRequest: message({ volume_id: str(1), target_path: str(2) }),
  NodeUnpublishVolumeResponse: message(),
  NodeGetCapabilitiesRequest: message(),
  NodeGetCapabilitiesResponse: message({ capabilities: { type: 'NodeServiceCapability', id: 1, rule: 'repeated' } }),
  NodeServiceCapability: capability('RPC', 'rpc', { UNKNOWN: 0, STAGE_UNSTAGE_VOLUME: 1 }),
  NodeGetInfoRequest: message(),
  NodeGetInfoResponse: message({ node_id: str(1), max_volumes_per_node: { type: 'int64', id: 2 } }),
};

const NAMESPACE = {
  nested: {
    csi: { nested: { v1: { nested: CSI_V1 } } },
    google: { nested: { protobuf: { nested: { BoolValue: message({ value: { type: 'bool', id: 1 } }) } } } },
  },
};

/**
 * The package definition grpc-js serves (services at csi.v1.Identity, csi.v1.Controller, csi.v1.Node). Field names
 * stay as the specification writes them (snake_case); absent fields read as their defaults ('' , {}, [], false).
 */
export function csiPackage(): PackageDefinition {
  // protobufjs' INamespace types each nested entry as one of several unions; the shape above is its JSON form.
  return fromJSON(NAMESPACE as Parameters<typeof fromJSON>[0], { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
}
