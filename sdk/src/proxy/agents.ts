/**
 * `node:http` agents through the gateway for axios, got and anything built on node:http:
 * `http-proxy-agent` forwards plain-http requests, `https-proxy-agent` tunnels https ones.
 * Loaded on first use (hence async) so that users of the API client alone never load them.
 * A refused CONNECT reaches the client as the gateway's own answer (https-proxy-agent
 * replays it), so its status and `X-IPCola-Error` are the response's; `gatewayRefusalOf`
 * reads them.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { ConnectionOptions } from 'node:tls';

/** An agent for plain-http targets (`http://...`). */
export async function forwardingAgent(proxyUrl: string): Promise<HttpAgent> {
  const { HttpProxyAgent } = await import('http-proxy-agent');
  return new HttpProxyAgent(proxyUrl, { keepAlive: true });
}

/**
 * An agent for https targets, tunnelled with CONNECT. `tls` applies to the targets (a
 * private CA): https-proxy-agent's own options only reach the connection to the proxy.
 */
export async function tunnellingAgent(
  proxyUrl: string,
  tls: ConnectionOptions = {},
): Promise<HttpsAgent> {
  const { HttpsProxyAgent } = await import('https-proxy-agent');
  class TargetTlsAgent extends HttpsProxyAgent<string> {
    override connect(
      ...[request, options]: Parameters<InstanceType<typeof HttpsProxyAgent>['connect']>
    ) {
      // Clients pass `ca: undefined` and the like: only what they set wins over ours.
      const merged: Record<string, unknown> = { ...options };
      for (const [name, value] of Object.entries(tls)) merged[name] ??= value;
      return super.connect(request, merged as unknown as typeof options);
    }
  }
  return new TargetTlsAgent(proxyUrl, { keepAlive: true }) as unknown as HttpsAgent;
}
