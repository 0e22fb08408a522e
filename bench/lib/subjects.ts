/**
 * Starts the target and the four subjects (IPCola, Squid, proxy-chain; direct needs
 * nothing), records their pinning and checks that each one answers.
 */
import {
  buildRequest,
  type Endpoint,
  HttpConn,
  openForwarding,
  openTunnel,
  type Subject,
} from './client.ts';
import { log, type Subjects } from './context.ts';
import {
  cpusAllowed,
  type Managed,
  startIpcola,
  startProxyChain,
  startSquid,
  startTarget,
} from './processes.ts';
import type { Results, SubjectName } from './report.ts';

export async function startSubjects(
  results: Results,
  profileDir: string | undefined,
): Promise<Subjects & { stop(): Promise<void> }> {
  const target = await startTarget();
  const [ours, sq, pc] = await Promise.all([
    startIpcola(profileDir ? { cpuProfileDir: profileDir } : {}),
    startSquid(),
    startProxyChain(),
  ]);
  const origin: Endpoint = { host: '127.0.0.1', port: target.port };
  const local = (port: number): Endpoint => ({ host: '127.0.0.1', port });
  const auth = { username: ours.key.id, password: ours.key.secret };
  const subjects: Record<SubjectName, Subject> = {
    direct: { name: 'direct', kind: 'direct' },
    ipcola: { name: 'ipcola', kind: 'http', proxy: local(ours.ports.proxy), auth },
    'ipcola-socks': { name: 'ipcola-socks', kind: 'socks', proxy: local(ours.ports.socks), auth },
    squid: { name: 'squid', kind: 'http', proxy: local(sq.port) },
    'proxy-chain': { name: 'proxy-chain', kind: 'http', proxy: local(pc.port) },
  };
  const procsOf: Record<SubjectName, Managed[]> = {
    direct: [],
    ipcola: [ours.server, ours.agent],
    'ipcola-socks': [ours.server, ours.agent],
    squid: [sq.managed],
    'proxy-chain': [pc.managed],
  };
  const stop = async () => {
    log('stopping the proxies');
    await Promise.all([ours.stop(), sq.managed.stop(), pc.managed.stop(), target.managed.stop()]);
    results.meta.logProblems = ours.problems;
  };

  try {
    results.meta.pinning = {
      harness: await cpusAllowed(process.pid),
      target: await cpusAllowed(target.managed.pid),
      'ipcola-server': await cpusAllowed(ours.server.pid),
      'ipcola-agent': await cpusAllowed(ours.agent.pid),
      squid: await cpusAllowed(sq.managed.pid),
      'proxy-chain': await cpusAllowed(pc.managed.pid),
    };
    await checkAnswers(subjects, origin, results);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    origin,
    target: target.managed,
    subjects,
    procsOf,
    ipcolaApi: local(ours.ports.api),
    stop,
  };
}

/** Each subject must answer, and ours from the agent's exit IP. */
async function checkAnswers(
  subjects: Record<SubjectName, Subject>,
  origin: Endpoint,
  results: Results,
): Promise<void> {
  for (const [name, subject] of Object.entries(subjects) as Array<[SubjectName, Subject]>) {
    const open = subject.kind === 'http' ? openForwarding : openTunnel;
    const conn = new HttpConn(await open(subject, origin));
    const answer = await conn.request(
      buildRequest(subject, origin, '/whoami', { forward: true }),
      true,
    );
    conn.close();
    const seenFrom = answer.body?.toString() ?? '';
    results.meta.sanity[name] = `${answer.status} from ${seenFrom}`;
    if (answer.status !== 200) throw new Error(`${name}: sanity request answered ${answer.status}`);
    if (name.startsWith('ipcola') && seenFrom !== '127.0.0.12') {
      throw new Error(`${name}: the target saw ${seenFrom}, not the agent's exit IP 127.0.0.12`);
    }
  }
}
