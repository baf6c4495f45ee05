import type { Answer, MountResponse, NameRequest } from '../protocol.js';
import type { Deps } from '../types.js';
import { getVolume } from '../volume.js';

export async function path({ Name: name }: NameRequest, deps: Deps): Promise<Answer<MountResponse>> {
  return { Mountpoint: (await getVolume(deps, name)).mountpoint };
}
