// What a CSI request's parameters (the `docker volume create -o` options, which Docker prints in `inspect`) and
// secrets (Swarm secrets, given with `--secret key=<secret name>`) become: the driver options the handlers check.
import { status } from '@grpc/grpc-js';
import { isSecretOption, optionNamed, printable } from '../../handlers/options.js';
import { RpcError } from './rpc.js';

/** The option a name spells if that option is a credential itself (option names are case-insensitive: `Password` too). */
function secretOption(name: string): string | undefined {
  const option = optionNamed(name);
  return option !== undefined && isSecretOption(option) ? option : undefined;
}

/**
 * Merges parameters and secrets into driver options. A credential given as a parameter is refused: Docker keeps
 * parameters in its records and shows them to anyone who can run `docker volume inspect`.
 */
export function driverOptions(parameters: Record<string, string>, secrets: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(parameters)) {
    const secret = secretOption(k);
    if (secret !== undefined) {
      throw new RpcError(
        status.INVALID_ARGUMENT,
        `option ${secret} of a cluster volume must be a Swarm secret, not -o (Docker shows -o values in docker volume inspect): ` +
          `printf '%s' "$VALUE" | docker secret create <secret name> - , then docker volume create --secret ${secret}=<secret name> ...`,
      );
    }
    out[k] = v;
  }
  for (const [k, v] of Object.entries(secrets)) {
    const option = secretOption(k);
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
