// The endpoint table: for each path Docker posts to, how its body is checked, the handler, and what it answers when
// the handler fails. Failures become Docker's Err here, once for every endpoint: handlers only throw.
import { activate as onActivate, capabilities as onCapabilities } from '../../handlers/endpoints/plugin.js';
import { create as onCreate } from '../../handlers/endpoints/create.js';
import { get as onGet } from '../../handlers/endpoints/get.js';
import { list as onList } from '../../handlers/endpoints/list.js';
import { mount as onMount } from '../../handlers/endpoints/mount.js';
import { path as onPath } from '../../handlers/endpoints/path.js';
import { remove as onRemove } from '../../handlers/endpoints/remove.js';
import { unmount as onUnmount } from '../../handlers/endpoints/unmount.js';
import { describe, NoSuchVolume, UserError } from '../../handlers/errors.js';
import type { Answer, CreateRequest, EmptyRequest, ErrResponse, GetResponse, ListResponse, MountRequest, MountResponse, NameRequest } from '../../handlers/protocol.js';
import { createRequest, emptyRequest, mountRequest, nameRequest } from './request.js';
import type { Deps } from '../../handlers/types.js';

/** An endpoint as the adapter calls it: any body in, the protocol's response out; it never rejects. */
export type Endpoint<R extends object = object> = (body: unknown, deps: Deps) => Promise<R>;

/**
 * Binds a handler to its endpoint: the body is checked into the request type, and whatever fails (the check or the
 * handler) is answered as Docker's error shape: a UserError's message as is, anything else as an internal error that
 * is also logged.
 */
function endpoint<Req, R extends ErrResponse>(
  name: string,
  parse: (body: unknown) => Req,
  handler: (request: Req, deps: Deps) => Promise<Answer<R>>,
  onError: Answer<R>,
): Endpoint<R> {
  return async (body, deps) => {
    try {
      return { ...(await handler(parse(body), deps)), Err: '' } as R;
    } catch (error) {
      if (error instanceof UserError) {
        // dockerd asks Get before every Create: an unknown volume is routine there, not an error worth logging.
        if (error instanceof NoSuchVolume) deps.log.debug(`${name}: ${error.message}`);
        else deps.log.error(`${name}: ${error.message}`);
        return { ...onError, Err: error.message } as R;
      }
      deps.log.error(`${name}: internal error: ${describe(error)}`);
      return { ...onError, Err: `internal error in the sshfs plugin: ${describe(error)} (see the plugin log)` } as R;
    }
  };
}

// Activate and Capabilities cannot fail: they answer without Err, as Docker's own plugins do.
export const activate: Endpoint = async (body, deps) => onActivate(emptyRequest(body), deps);
export const capabilities: Endpoint = async (body, deps) => onCapabilities(emptyRequest(body), deps);
export const create = endpoint<CreateRequest, ErrResponse>('Create', createRequest, onCreate, {});
export const remove = endpoint<NameRequest, ErrResponse>('Remove', nameRequest, onRemove, {});
export const mount = endpoint<MountRequest, MountResponse>('Mount', mountRequest, onMount, { Mountpoint: '' });
export const unmount = endpoint<MountRequest, ErrResponse>('Unmount', mountRequest, onUnmount, {});
export const path = endpoint<NameRequest, MountResponse>('Path', nameRequest, onPath, { Mountpoint: '' });
export const get = endpoint<NameRequest, GetResponse>('Get', nameRequest, onGet, { Volume: null });
export const list = endpoint<EmptyRequest, ListResponse>('List', emptyRequest, onList, { Volumes: [] });

/** Every path Docker posts to, and its endpoint. */
export const ENDPOINTS: Record<string, Endpoint> = {
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
