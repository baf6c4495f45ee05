// The endpoint table: for each path Docker posts to, how its body is checked, the handler, how its answer becomes
// Docker's response, and what it answers when the handler fails. Failures become Docker's Err here, once for every
// endpoint: handlers only throw.
import { create as onCreate } from '../../handlers/endpoints/create.js';
import { get as onGet } from '../../handlers/endpoints/get.js';
import { list as onList } from '../../handlers/endpoints/list.js';
import { mount as onMount } from '../../handlers/endpoints/mount.js';
import { path as onPath } from '../../handlers/endpoints/path.js';
import { remove as onRemove } from '../../handlers/endpoints/remove.js';
import { unmount as onUnmount } from '../../handlers/endpoints/unmount.js';
import { describe, failureOf, NoSuchVolume } from '../../handlers/errors.js';
import type { CreateRequest, ReferenceRequest, VolumeRequest } from '../../handlers/requests.js';
import type { Deps } from '../../handlers/types.js';
import type { ActivateResponse, Answer, CapabilitiesResponse, EmptyRequest, ErrResponse, GetResponse, ListResponse, MountResponse } from './protocol.js';
import { createRequest, emptyRequest, mountRequest, nameRequest } from './request.js';

/** An endpoint as the adapter calls it: any body in, the protocol's response out; it never rejects. */
export type Endpoint<R extends object = object> = (body: unknown, deps: Deps) => Promise<R>;

/**
 * Binds a handler to its endpoint: the body is checked into the handler's request, and whatever fails (the check or
 * the handler) is answered as Docker's error shape: a UserError's message as is, anything else as an internal error
 * that is also logged.
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
      const failure = failureOf(error);
      // dockerd asks Get before every Create: an unknown volume is routine there, not an error worth logging.
      if (error instanceof NoSuchVolume) deps.log.debug(`${name}: ${failure.message}`);
      else if (!failure.internal) deps.log.error(`${name}: ${failure.message}`);
      else deps.log.error(`${name}: internal error: ${describe(error)}`);
      return { ...onError, Err: failure.message } as R;
    }
  };
}

// Activate and Capabilities are Docker's handshake: they cannot fail and answer without Err, as Docker's own plugins do.
export const activate: Endpoint<ActivateResponse> = async () => ({ Implements: ['VolumeDriver'] });
// Each node keeps its own mounts and state, so the volume is local to the node even though the remote is shared.
export const capabilities: Endpoint<CapabilitiesResponse> = async () => ({ Capabilities: { Scope: 'local' } });

/** A handler that answers nothing but its success: Docker reads only Err. */
function answeringNothing<Req>(handler: (request: Req, deps: Deps) => Promise<void>) {
  return async (request: Req, deps: Deps): Promise<Answer<ErrResponse>> => {
    await handler(request, deps);
    return {};
  };
}

export const create = endpoint<CreateRequest, ErrResponse>('Create', createRequest, answeringNothing(onCreate), {});
export const remove = endpoint<VolumeRequest, ErrResponse>('Remove', nameRequest, answeringNothing(onRemove), {});
export const mount = endpoint<ReferenceRequest, MountResponse>(
  'Mount',
  mountRequest,
  async (request, deps) => ({ Mountpoint: await onMount(request, deps) }),
  { Mountpoint: '' },
);
// dockerd (and `docker run --rm`) waits for this answer and only logs an Unmount's error: answered before the detach.
export const unmount = endpoint<ReferenceRequest, ErrResponse>('Unmount', mountRequest, answeringNothing((request, deps) => onUnmount(request, deps, { answerBeforeDetach: true })), {});
export const path = endpoint<VolumeRequest, MountResponse>('Path', nameRequest, async (request, deps) => ({ Mountpoint: await onPath(request, deps) }), {
  Mountpoint: '',
});
export const get = endpoint<VolumeRequest, GetResponse>(
  'Get',
  nameRequest,
  async (request, deps) => {
    const { name, mountpoint, createdAt, status } = await onGet(request, deps);
    return { Volume: { Name: name, Mountpoint: mountpoint, CreatedAt: createdAt, Status: status } };
  },
  { Volume: null },
);
export const list = endpoint<EmptyRequest, ListResponse>(
  'List',
  emptyRequest,
  async (_request, deps) => ({ Volumes: (await onList(deps)).map((v) => ({ Name: v.name, Mountpoint: v.mountpoint })) }),
  { Volumes: [] },
);

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
