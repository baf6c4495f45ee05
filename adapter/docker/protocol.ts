// The Docker VolumeDriver protocol: what dockerd posts to each endpoint and what it reads back, in one place.
// Field casing is Docker's own (Name, Opts, ID, Mountpoint, Err...). request.ts checks bodies into the domain's
// requests (handlers/requests.ts); routes.ts turns the handlers' answers into these responses and fills in Err.

/** A non-empty Err is what the docker CLI prints. */
export interface ErrResponse {
  Err: string;
}

/** Activate and Capabilities: no body, or one nobody reads. */
export type EmptyRequest = Record<string, never>;

export interface CreateRequest {
  Name: string;
  /** `-o key=value` options, as given (validated by options.ts). */
  Opts: Record<string, string>;
}

/** Remove, Path and Get. */
export interface NameRequest {
  Name: string;
}

/** Mount and Unmount: ID names the container (or `docker cp`) taking or releasing a reference. */
export interface MountRequest {
  Name: string;
  ID: string;
}

export interface MountResponse extends ErrResponse {
  Mountpoint: string;
}

export interface VolumeInfo {
  Name: string;
  Mountpoint: string;
  CreatedAt?: string;
  Status?: Record<string, unknown>;
}

export interface GetResponse extends ErrResponse {
  Volume: VolumeInfo | null;
}

export interface ListResponse extends ErrResponse {
  Volumes: { Name: string; Mountpoint: string }[];
}

export interface CapabilitiesResponse {
  Capabilities: { Scope: 'local' | 'global' };
}

export interface ActivateResponse {
  Implements: string[];
}

/** What a handler returns: the response without Err (an error is thrown, and mapped to Err in one place). */
export type Answer<R> = Omit<R, 'Err'>;
