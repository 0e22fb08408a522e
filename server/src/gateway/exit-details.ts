/**
 * `X-IPCola-Exit-Details: 1`: a customer asks the proxy (on a forwarded request, or on
 * CONNECT) for where its exit is beyond the country every answer carries: region, city,
 * network. The header is the proxy's, so it never goes on to the target.
 */
import type { IncomingMessage } from 'node:http';
import type { Exit } from './exit-index.ts';

export const EXIT_DETAILS_HEADER = 'x-ipcola-exit-details';

export function wantsExitDetails(req: IncomingMessage): boolean {
  return req.headers[EXIT_DETAILS_HEADER] === '1';
}

/** The answer's headers about the exit, each only when known (and printable as a header). */
export function exitDetailHeaders(exit: Exit): Array<[name: string, value: string]> {
  const headers: Array<[string, string]> = [];
  if (exit.region) headers.push(['X-IPCola-Exit-Region', exit.region]);
  if (exit.city) headers.push(['X-IPCola-Exit-City', exit.city]);
  if (exit.asn !== undefined) headers.push(['X-IPCola-Exit-ASN', String(exit.asn)]);
  if (exit.asOrganization && /^[\x20-\x7e]{1,200}$/.test(exit.asOrganization)) {
    headers.push(['X-IPCola-Exit-AS-Organization', exit.asOrganization]);
  }
  return headers;
}
