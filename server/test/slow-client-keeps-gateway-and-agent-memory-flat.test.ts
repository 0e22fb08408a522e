import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { test } from 'node:test';
import { startProxyNetwork } from './support/proxy-network.ts';

/** Well under the 80 MB a missing back-pressure would buffer, well over a busy GC's noise. */
const GROWTH_LIMIT = 32 * 1024 * 1024;

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb) * 1024;
}

test('a 200 MB download read slowly keeps gateway and agent memory flat (back-pressure end to end)', async (t) => {
  const net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
  try {
    const gatewayPid = net.server.child.pid as number;
    const agentPid = net.agents.get('127.0.0.12')?.pid as number;

    const socket = connect(net.ports.proxy, '127.0.0.1');
    socket.on('error', () => {});
    const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
    socket.write(
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    );
    // Read 120 MB of the 200 MB in small sips, a few ms apart: the target could send far
    // faster, so everything it is not allowed to send must wait at the target, not in us.
    let received = 0;
    let sent = false;
    // Memory is compared after the first 40 MB, once buffers, pools and JIT have warmed up:
    // what matters is that it stays flat while the target keeps offering more.
    let before = { gateway: 0, agent: 0 };
    let peak = { gateway: 0, agent: 0 };
    const started = Date.now();
    for await (const chunk of socket as AsyncIterable<Buffer>) {
      received += chunk.length;
      if (!sent) {
        sent = true;
        socket.write('GET /stream/200000000 HTTP/1.1\r\nHost: t\r\n\r\n');
      }
      if (before.gateway === 0 && received >= 40 * 1024 * 1024) {
        before = { gateway: await rssBytes(gatewayPid), agent: await rssBytes(agentPid) };
        peak = { ...before };
      } else if (before.gateway > 0 && received % (2 * 1024 * 1024) < chunk.length) {
        peak = {
          gateway: Math.max(peak.gateway, await rssBytes(gatewayPid)),
          agent: Math.max(peak.agent, await rssBytes(agentPid)),
        };
      }
      await new Promise((resolve) => setTimeout(resolve, 2)); // the slow reader's pace
      if (received >= 120 * 1024 * 1024 || Date.now() - started > 60_000) break;
    }
    socket.destroy();
    assert.ok(received >= 120 * 1024 * 1024, `read ${received} bytes`);
    const growth = { gateway: peak.gateway - before.gateway, agent: peak.agent - before.agent };
    t.diagnostic(
      `RSS growth while MB 40 to 120 were read slowly: gateway ${growth.gateway} B, agent ${growth.agent} B`,
    );
    // Buffering what the slow reader has not taken would grow with every MB offered: some
    // 80 MB over this window. With back-pressure the growth is the heap's own: 0.7-1.5 MB
    // alone, up to 17 MB seen while the whole suite shares two cores (a GC that waits).
    assert.ok(growth.gateway < GROWTH_LIMIT, `gateway RSS grew ${growth.gateway} bytes`);
    assert.ok(growth.agent < GROWTH_LIMIT, `agent RSS grew ${growth.agent} bytes`);
  } finally {
    await net.close();
  }
});
