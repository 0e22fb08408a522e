/**
 * Targets written so that they do not look like the address they are (legacy IPv4
 * spellings, IPv4-mapped and NAT64 IPv6, a DNS name), sent through the real gateway to
 * real exit nodes with raw requests (curl would rewrite some of them). Exit 127.0.0.12
 * allows 127.0.0.1/32 only, as every test exit does; exit 127.0.0.13 runs the production
 * policy with no exception at all.
 */
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PROXY_ERRORS } from '../src/errors/index.ts';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

/** An authority for a request line: IPv6 literals in brackets. */
const authority = (host: string, port: number) =>
  isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;

/** 127.0.0.2 (outside 127.0.0.1/32) in disguise; the last two are refused on any exit. */
const REFUSED_FORMS = [
  '0x7f.2',
  '127.2',
  '017700000002',
  '2130706434',
  '::ffff:127.0.0.2',
  '::ffff:7f00:2',
  '64:ff9b::7f00:2',
  // NAT64 of the allowed 127.0.0.1: an allow-target covers the address itself, not what
  // a translator would make of it.
  '64:ff9b::7f00:1',
  '::1',
];

/** 127.0.0.1 in the same disguises: decoded to the allowed address, so they get through. */
const ALLOWED_FORMS = [
  '2130706433',
  '0x7f.1',
  '127.1',
  '017700000001',
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
];

/** Method 0x02 chosen, credentials accepted, then the CONNECT reply with `rep`. */
function socksAnswer(rep: number): string {
  return `05020100 05${rep.toString(16).padStart(2, '0')}0001000000000000`.replace(' ', '');
}
const FORBIDDEN_REP = PROXY_ERRORS.target_forbidden.socks as number;

function assertForbidden(answer: string, what: string): void {
  const head = answer.slice(0, answer.indexOf('\r\n\r\n') + 2);
  assert.match(head, /^HTTP\/1\.1 403 /, what);
  assert.match(head, /\r\nX-IPCola-Error: target_forbidden\r\n/, what);
  assert.match(
    head,
    /\r\nProxy-Status: ipcola; error=destination_ip_prohibited; details="target_forbidden"\r\n/,
    what,
  );
  assert.match(answer.slice(head.length + 2), /^target_forbidden: .+\n$/, what);
}

describe('targets in disguise are judged by the address they name', () => {
  let net: ProxyNetwork;
  const basic = (params: string) =>
    `Basic ${Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64')}`;

  before(async () => {
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'fr', allowTargets: [] },
    ]);
  });
  after(() => net?.close());

  const forward = (host: string, params = '-country-de') =>
    exchange(
      net.ports.proxy,
      `GET http://${authority(host, net.targetPort)}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\nConnection: close\r\n\r\n`,
    ).then(String);
  const tunnel = (host: string, params = '-country-de') =>
    exchange(
      net.ports.proxy,
      `CONNECT ${authority(host, net.targetPort)} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\n\r\n` +
        // Pipelined: read by the target if the tunnel opens, by nobody if it is refused.
        'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    ).then(String);

  /** A SOCKS5 CONNECT with the host as a domain name (ATYP 3) or IPv6 address (ATYP 4). */
  const socks = (host: string, params = '-country-de') => {
    const user = Buffer.from(`${net.key.id}${params}`);
    const pass = Buffer.from(net.key.secret);
    const port = [net.targetPort >> 8, net.targetPort & 0xff];
    let address: Buffer;
    if (isIPv6(host)) {
      const groups = expandIPv6(host);
      address = Buffer.from([0x04, ...groups.flatMap((group) => [group >> 8, group & 0xff])]);
    } else {
      address = Buffer.concat([Buffer.from([0x03, host.length]), Buffer.from(host)]);
    }
    return exchange(
      net.ports.socks,
      Buffer.concat([
        Buffer.from([0x05, 0x01, 0x02, 0x01, user.length]),
        user,
        Buffer.from([pass.length]),
        pass,
        Buffer.from([0x05, 0x01, 0x00]),
        address,
        Buffer.from(port),
        Buffer.from('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'),
      ]),
    );
  };

  for (const host of REFUSED_FORMS) {
    test(`${host} is target_forbidden through the HTTP proxy, CONNECT and SOCKS5`, async () => {
      assertForbidden(await forward(host), `forward to ${host}`);
      assertForbidden(await tunnel(host), `CONNECT to ${host}`);
      // The refusal is the last thing said: the pipelined request never reaches anyone.
      assert.equal((await socks(host)).toString('hex'), socksAnswer(FORBIDDEN_REP), host);
    });
  }

  test('the same spellings of the allowed 127.0.0.1 are decoded and reach the target', async () => {
    for (const host of ALLOWED_FORMS) {
      assert.match(await forward(host), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\n127\.0\.0\.12$/, host);
      assert.match(
        await tunnel(host),
        /^HTTP\/1\.1 200 Connection established\r\n[\s\S]*\r\n\r\nHTTP\/1\.1 200 [\s\S]*\r\n\r\n127\.0\.0\.12$/,
        host,
      );
      const reply = await socks(host);
      assert.equal(reply.subarray(0, 14).toString('hex'), socksAnswer(0x00), host);
      assert.match(reply.subarray(14).toString(), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\n127\.0\.0\.12$/);
    }
  });

  test('a DNS name is judged by what it resolves to at the exit: localhost is refused where 127.0.0.1 is not allowed', async () => {
    // /etc/hosts maps localhost to 127.0.0.1: the de exit (127.0.0.1/32 allowed) reaches
    // it, the fr exit (no exception) refuses it after resolving.
    assert.match(await forward('localhost'), /\r\n\r\n127\.0\.0\.12$/);
    assertForbidden(await forward('localhost', '-country-fr'), 'forward to localhost via fr');
    assertForbidden(await tunnel('localhost', '-country-fr'), 'CONNECT to localhost via fr');
    assert.equal(
      (await socks('localhost', '-country-fr')).toString('hex'),
      socksAnswer(FORBIDDEN_REP),
    );
  });

  test('after every refusal the gateway serves, and no connection is left open', async () => {
    assert.match(await forward('127.0.0.1'), /^HTTP\/1\.1 200 [\s\S]*127\.0\.0\.12$/);
    assert.equal(net.server.child.exitCode, null);
    await eventually(
      async () => (await net.clientConnections()).length === 0,
      10_000,
      'every client connection to be closed',
    );
    await eventually(
      async () => (await net.egressConnections(net.targetPort)).length === 0,
      15_000,
      'every exit connection to the target to be closed',
    );
  });
});

/** The eight 16-bit groups of an IPv6 address (with an embedded dotted IPv4 tail or not). */
function expandIPv6(text: string): number[] {
  let address = text;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    address = `${address.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const middle = Array(8 - left.length - right.length).fill('0');
  return [...left, ...(tail === undefined ? [] : middle), ...right].map((group) =>
    Number.parseInt(group, 16),
  );
}
