// One POST to a volume plugin's Unix socket, sent the way dockerd sends it: no Content-Type, an empty Host and
// the v1.2 Accept header. Shared by the benchmark and the e2e/fault harness.
import http from 'node:http';

export interface PluginHttpResponse {
  status: number;
  body: string;
}

/**
 * BODY is JSON-encoded unless it is a string; undefined sends an empty body (as /Plugin.Activate gets).
 * AGENT keeps connections alive across requests (dockerd does); without one each request opens its own.
 */
export function pluginRequest(
  socketPath: string,
  urlPath: string,
  body?: unknown,
  timeoutMs = 30_000,
  agent?: http.Agent,
): Promise<PluginHttpResponse> {
  const payload = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        ...(agent !== undefined ? { agent } : {}),
        path: urlPath,
        method: 'POST',
        headers: { Host: '', Accept: 'application/vnd.docker.plugins.v1.2+json', 'Content-Length': Buffer.byteLength(payload) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${urlPath} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
