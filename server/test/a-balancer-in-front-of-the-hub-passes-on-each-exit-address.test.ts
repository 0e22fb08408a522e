/**
 * The hub proves an exit IP by the address a connection comes from, so a TCP balancer in
 * front of it would make every exit look like the balancer. With HUB_PROXY_PROTOCOL_FROM
 * naming the balancer, the PROXY header it sends (HAProxy's `send-proxy`) gives the hub
 * each agent's own address back, for the tunnel and for the exit-IP proof. Here the
 * "balancer" is a relay bound to 127.0.0.50 that writes the header and then pipes.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { eventually } from './support/engines.ts';
import { proxyLineFor, startProxyHeaderRelay } from './support/proxy-header-relay.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const BALANCER = '127.0.0.50';
const EXIT = '127.0.0.14';

describe('a balancer in front of the hub passes on each exit address', () => {
  let net: ProxyNetwork;
  const balancers: Server[] = [];

  before(async () => {
    net = await startProxyNetwork([], {
      HUB_PROXY_PROTOCOL_FROM: `${BALANCER}/32`,
      PROXY_HANDSHAKE_TIMEOUT_MS: '1500',
    });
  });
  after(async () => {
    for (const server of balancers) server.close();
    await net?.close();
  });

  test('an agent behind the balancer proves its exit IP and carries traffic from it', async () => {
    const balancer = await startProxyHeaderRelay({
      port: net.ports.hub,
      from: BALANCER,
      header: (client) => proxyLineFor(client, net.ports.hub),
    });
    balancers.push(balancer.server);
    const { nodeId } = await net.startAgent({
      ip: EXIT,
      country: 'nl',
      hub: `127.0.0.1:${balancer.port}`,
    });
    const up = net.server.logs.find((line) => line.msg === 'node up' && line.nodeId === nodeId);
    // The agent's tunnel leaves from 127.0.0.1, its proof from the exit IP.
    assert.equal(up?.remoteAddress, '127.0.0.1', 'the hub saw the agent, not the balancer');
    // An exit carries traffic only once its proof came from its own address.
    const answer = await request(net.target, {
      dispatcher: new ProxyAgent(net.proxyUrl('-country-nl')),
    });
    assert.equal(answer.statusCode, 200);
    assert.equal(await answer.body.text(), EXIT);
  });

  test('a connection from the balancer without the header is refused', async () => {
    const balancer = await startProxyHeaderRelay({
      port: net.ports.hub,
      from: BALANCER,
      header: () => '',
    });
    balancers.push(balancer.server);
    const socket = connect({ host: '127.0.0.1', port: balancer.port });
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: hub\r\n\r\n');
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
    });
    await once(socket, 'close');
    assert.equal(seen, '', 'nothing answered: the hub closed the connection');
    await eventually(
      () => net.server.logs.some((line) => line.msg === 'balancer connection refused'),
      5_000,
      'the refusal in the log',
    );
  });

  test('anybody else sending a header claims nothing: the hub reads it as a bad request', async () => {
    const socket = connect({ host: '127.0.0.1', port: net.ports.hub, localAddress: '127.0.0.51' });
    socket.on('error', () => {});
    await once(socket, 'connect');
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
    });
    socket.write(`PROXY TCP4 ${EXIT} 127.0.0.1 40000 7000\r\nGET / HTTP/1.1\r\nHost: hub\r\n\r\n`);
    await once(socket, 'close');
    assert.match(seen, /^HTTP\/1\.1 400 /);
  });
});
