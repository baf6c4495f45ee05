// One handler per endpoint, keyed by the path Docker posts to.
import { create } from './create.js';
import { get } from './get.js';
import { list } from './list.js';
import { path } from './path.js';
import { activate, capabilities } from './plugin.js';
import { mount } from './mount.js';
import { remove } from './remove.js';
import type { Deps } from './types.js';
import { unmount } from './unmount.js';

export type AnyHandler = (request: unknown, deps: Deps) => Promise<object>;

export const ENDPOINTS: Record<string, AnyHandler> = {
  '/Plugin.Activate': activate,
  '/VolumeDriver.Create': create,
  '/VolumeDriver.Remove': remove,
  '/VolumeDriver.Mount': mount,
  '/VolumeDriver.Unmount': unmount,
  '/VolumeDriver.Path': path,
  '/VolumeDriver.Get': get,
  '/VolumeDriver.List': list,
  '/VolumeDriver.Capabilities': capabilities,
};

export { activate, capabilities, create, get, list, mount, path, remove, unmount };
