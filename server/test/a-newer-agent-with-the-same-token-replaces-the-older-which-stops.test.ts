import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LogLine, nextLog, throughProxy } from './support/node-health.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const AGENT_DIR = fileURLToPath(new URL('../../agent/', import.meta.url));
/** The agent's exit status when another agent with its token replaced it (agent --help). */
const EXIT_REPLACED = 3;
/** Bound on each awaited event; agents compiling TypeScript on a loaded machine are slow. */
const WAIT_MS = 60_000;

interface AgentProcess {
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<number | null>;
}

let net: ProxyNetwork;
const agents: AgentProcess[] = [];

before(async () => {
  net = await startProxyNetwork([]);
});

after(async () => {
  for (const { child } of agents) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(agents.map((agent) => agent.exited));
  await net.close();
});

/** The real agent program (agent/src/main.ts) with `token`, logging JSON lines we keep. */
function startAgent(token: string, exitIp: string): AgentProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/main.ts',
      '--hub',
      `127.0.0.1:${net.ports.hub}`,
      '--country',
      'de',
      '--exit-ip',
      exitIp,
      '--allow-target',
      '127.0.0.1/32',
    ],
    {
      cwd: AGENT_DIR,
      env: { ...process.env, IPCOLA_NODE_TOKEN: token },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const logs: LogLine[] = [];
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) logs.push(JSON.parse(line) as LogLine);
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const agent = { child, logs, exited };
  agents.push(agent);
  return agent;
}

test('two agents with one node token: the newer stays attached, the older says why and exits 3', async () => {
  const node = (await (await net.api('/v1/nodes', { method: 'POST', body: '{}' })).json()) as {
    token: string;
  };
  const firstUp = nextLog(net.server, (line) => line.msg === 'node up', WAIT_MS, 'node up');
  const older = startAgent(node.token, '127.0.0.12');
  await firstUp;
  assert.equal((await throughProxy(net, '-country-de')).body, '127.0.0.12');

  const mark = net.server.logs.length;
  const newer = startAgent(node.token, '127.0.0.13');
  const code = await Promise.race([
    older.exited,
    new Promise((_, reject) =>
      setTimeout(
        () => reject(new Error(`the older agent still runs after ${WAIT_MS} ms`)),
        WAIT_MS,
      ),
    ),
  ]);
  assert.equal(code, EXIT_REPLACED);

  // The older agent said why, in its own log.
  const reason = older.logs.find((line) => line.level === 50 && line.exitStatus === EXIT_REPLACED);
  assert.ok(reason, `no error line with the reason: ${JSON.stringify(older.logs)}`);
  assert.match(String(reason.msg), /another agent with this node token replaced this one/);
  assert.match(
    String(reason.reason),
    /another agent with this node token connected from 127\.0\.0\.1/,
  );

  // The hub said why too, and nothing flapped: from the newer agent's arrival to the older
  // one's exit, exactly one node up (the newer) and one replacement.
  const since = net.server.logs.slice(mark);
  assert.equal(since.filter((line) => line.msg === 'node up').length, 1);
  assert.deepEqual(
    since.filter((line) => line.msg === 'node down').map((line) => line.reason),
    ['replaced'],
  );
  assert.ok(
    since.some((line) => /another agent presented this node token/.test(String(line.msg))),
    'the hub logs the replacement',
  );
  assert.ok(
    since.some((line) => line.msg === 'node upgrade refused' && line.status === 409),
    'the hub logs its refusal of the older agent',
  );

  // The newer agent is the one attached and carrying traffic.
  assert.equal(newer.child.exitCode, null);
  assert.equal((await throughProxy(net, '-country-de')).body, '127.0.0.13');
  const nodes = (await (await net.api('/v1/nodes')).json()) as {
    items: Array<{ online: boolean; exit_ips: string[] }>;
  };
  assert.deepEqual(
    nodes.items.map((n) => [n.online, n.exit_ips]),
    [[true, ['127.0.0.13']]],
  );
});

test('the agent --help states the rule and the exit status', async () => {
  const help = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--help'], {
    cwd: AGENT_DIR,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  help.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  const [code] = await once(help, 'exit');
  assert.equal(code, 0);
  assert.match(text, /One agent per node token/);
  assert.match(text, new RegExp(`exits with status ${EXIT_REPLACED} instead of reconnecting`));
});
