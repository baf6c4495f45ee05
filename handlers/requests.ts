// What any front end (the Docker binding in adapter/docker/, the CSI server in adapter/csi/) passes to the endpoints
// and gets back: the domain's own words, none of a protocol's field names, status codes or error shapes.
import { UserError } from './errors.js';
import { printable } from './options.js';

/** Remove, Path and Get: a volume by its name (checked with checkVolumeName). */
export interface VolumeRequest {
  name: string;
}

/** Create: the name and the options as the user gave them (validated by options.ts). */
export interface CreateRequest extends VolumeRequest {
  options: Record<string, string>;
}

/**
 * Mount and Unmount: `ref` names who takes or releases a reference on the volume (a container, a `docker cp`, a CSI
 * publication); the last one released unmounts it.
 */
export interface ReferenceRequest extends VolumeRequest {
  ref: string;
}

/** Get: the volume and its Status, read live. */
export interface VolumeInfo {
  name: string;
  mountpoint: string;
  createdAt: string;
  status: Record<string, unknown>;
}

/** List: every volume and where it is (or would be) mounted. */
export interface VolumeSummary {
  name: string;
  mountpoint: string;
}

// Docker passes a plugin's volume names on unchecked (on Linux only its local driver holds them to
// [A-Za-z0-9][A-Za-z0-9_.-]+, and no driver to a length); the plugin names files and a mountpoint after the volume, so
// it takes that character set and a file name's length.
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

/**
 * Longest name Create accepts: 255 (a file name's limit) less what the longest file named after a volume adds
 * (`<name>.ssh.log.tmp-<pid>`: 20 characters with a 7-digit pid), with room to spare. Names up to 255 are still
 * answered (Get, Remove...) so that a request about one says "no such volume", not "invalid".
 */
const MAX_NEW_NAME_LENGTH = 200;

/**
 * The rule every front end checks a volume's name with before a handler sees it: the plugin names files and
 * directories after volumes, so a name can never be a path.
 */
export function checkVolumeName(name: string): string {
  if (!VOLUME_NAME.test(name)) {
    throw new UserError(
      `volume name "${printable(name)}" is not valid: use letters, digits and _ . - (starting with a letter or digit, at most 255)`,
    );
  }
  return name;
}

/** The name, if a new volume may have it (Create): the rule above, and short enough for the files named after it. */
export function checkNewVolumeName(name: string): string {
  checkVolumeName(name);
  // The plugin names files after the volume (its key, its ssh log, their temp files): longer names could never mount.
  if (name.length > MAX_NEW_NAME_LENGTH) throw new UserError(`volume name is ${name.length} characters long; use at most ${MAX_NEW_NAME_LENGTH}`);
  return name;
}
