// What a CSI request's parameters (the `docker volume create -o` options, which Docker prints in `inspect`) and
// secrets (Swarm secrets, given with `--secret key=<secret name>`) become: the driver options the handlers check.
import { status } from '@grpc/grpc-js';
import { printable } from '../../handlers/options.js';
import { RpcError } from './rpc.js';

/** Secret keys a volume may be given, and the option each one is. Credentials only: anything else is a parameter. */
export const SECRET_OPTIONS: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, string>, { password: 'password', key: 'key' }),
);

/**
 * Merges parameters and secrets into driver options. A credential given as a parameter is refused: Docker keeps
 * parameters in its records and shows them to anyone who can run `docker volume inspect`.
 */
export function driverOptions(parameters: Record<string, string>, secrets: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(parameters)) {
    if (k in SECRET_OPTIONS) {
      throw new RpcError(
        status.INVALID_ARGUMENT,
        `option ${k} of a cluster volume must be a Swarm secret, not -o (Docker shows -o values in docker volume inspect): ` +
          `printf '%s' "$VALUE" | docker secret create <secret name> - , then docker volume create --secret ${k}=<secret name> ...`,
      );
    }
    out[k] = v;
  }
  for (const [k, v] of Object.entries(secrets)) {
    const option = SECRET_OPTIONS[k];
    if (option === undefined) {
      throw new RpcError(
        status.INVALID_ARGUMENT,
        `secret key "${printable(k)}" is not one this plugin reads: use --secret password=<secret> or --secret key=<secret> ` +
          '(a private key); other options are given with -o',
      );
    }
    out[option] = v;
  }
  return out;
}
