/**
 * A session keeps one exit for every request and every client (fetch, its proxy URL),
 * `rotate()` moves it to another, and when its exit goes offline the caller is told
 * (SessionExitGoneError) instead of being moved silently; rotating then gets a live exit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import axios from 'axios';
import { SessionExitGoneError } from '../src/errors.ts';
import type { ProxyHelpers } from '../src/proxy/index.ts';
import { type ProxyNetwork, startProxyNetwork, until } from './support/proxy-network.ts';

const US = ['127.0.0.13', '127.0.0.14'];
// Each rotation picks one of two exits: the chance that 20 in a row keep the same is 2^-20.
const ROTATIONS = 20;

describe('sessions stick, rotate, and say when their exit is gone', () => {
  let network: ProxyNetwork;
  let ipc: ProxyHelpers;

  before(async () => {
    network = await startProxyNetwork();
    ipc = network.helpers();
  });
  after(async () => {
    await ipc?.close();
    await network?.close();
  });

  it('keeps one exit over forward, CONNECT and its proxy URL', async () => {
    const session = ipc.session({ country: 'us', ttl: '10m' });
    try {
      const first = await (await session.fetch(network.httpTarget)).text();
      assert.ok(US.includes(first));
      for (const target of [network.httpTarget, network.httpsTarget, network.httpTarget]) {
        assert.equal(await (await session.fetch(target)).text(), first);
      }
      // Another client with the same session's URL reaches the same exit.
      const { HttpProxyAgent } = await import('http-proxy-agent');
      const viaAxios = await axios.get(network.httpTarget, {
        httpAgent: new HttpProxyAgent(session.proxyUrl()),
        proxy: false,
        responseType: 'text',
      });
      assert.equal(viaAxios.data, first);
      assert.match(session.proxyUrl(), new RegExp(`-country-us-session-${session.id}-ttl-10m:`));
    } finally {
      await session.close();
    }
  });

  it('rotate() gives a new id and, within a few rotations, another exit', async () => {
    const session = ipc.session({ country: 'us' });
    try {
      const first = await (await session.fetch(network.httpsTarget)).text();
      const ids = new Set([session.id]);
      let other: string | undefined;
      let rotations = 0;
      for (; rotations < ROTATIONS && other === undefined; rotations++) {
        ids.add(session.rotate());
        const now = await (await session.fetch(network.httpsTarget)).text();
        assert.ok(US.includes(now));
        if (now !== first) other = now;
      }
      assert.ok(other !== undefined, `still ${first} after ${ROTATIONS} rotations`);
      assert.equal(ids.size, rotations + 1, 'every rotation a new session id');
    } finally {
      await session.close();
    }
  });

  it('says session_exit_gone when its exit goes offline, and rotating cures it', async () => {
    const session = ipc.session({ country: 'us' });
    try {
      const exit = await (await session.fetch(network.httpTarget)).text();
      const downBefore = network.server.logs.filter((line) => line.msg === 'node down').length;
      await network.stopAgent(exit);
      await until(
        () => network.server.logs.filter((line) => line.msg === 'node down').length > downBefore,
        20_000,
        'the hub to see the exit node go',
      );
      for (const target of [network.httpTarget, network.httpsTarget]) {
        const error = await session.fetch(target).then(
          () => assert.fail('the session moved to another exit'),
          (thrown: unknown) => thrown,
        );
        assert.ok(error instanceof SessionExitGoneError, String(error));
        assert.equal(error.status, 503);
        assert.match(error.message, /rotate/);
      }
      session.rotate();
      const now = await (await session.fetch(network.httpTarget)).text();
      assert.ok(US.includes(now) && now !== exit, `a live us exit, not ${now}`);
    } finally {
      await session.close();
    }
  });
});
