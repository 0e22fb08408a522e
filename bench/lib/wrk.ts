/**
 * wrk (Debian) as a second load generator for plain-HTTP forwarding, a cross-check of
 * the in-house one. wrk speaks to one host:port; a Lua script makes it send the
 * absolute-form request target a forward proxy expects, the target's Host header and,
 * for our gateway, Proxy-Authorization.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Endpoint, Subject } from './client.ts';
import type { RateResult } from './load.ts';

export function wrkVersion(): string | null {
  try {
    // wrk -v prints its version and exits with 1.
    const out = execFileSync('sh', ['-c', 'wrk -v 2>&1 || true'], { encoding: 'utf8' });
    return /wrk (\S+)/.exec(out)?.[1] ?? null;
  } catch {
    return null;
  }
}

function lua(subject: Subject, origin: Endpoint): string {
  const authority = `${origin.host}:${origin.port}`;
  const lines = [`wrk.headers["Host"] = "${authority}"`];
  if (subject.kind === 'http') {
    lines.push(`wrk.path = "http://${authority}/1k"`);
    if (subject.auth) {
      const token = Buffer.from(`${subject.auth.username}:${subject.auth.password}`).toString(
        'base64',
      );
      lines.push(`wrk.headers["Proxy-Authorization"] = "Basic ${token}"`);
    }
  } else {
    lines.push('wrk.path = "/1k"');
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n\',',
    '    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,',
    '    latency:percentile(50), latency:percentile(99)))',
    'end',
  );
  return `${lines.join('\n')}\n`;
}

/** wrk -t1 -cN for durationMs against the subject (direct or an HTTP proxy). */
export async function wrkRate(
  subject: Subject,
  origin: Endpoint,
  options: { connections: number; durationMs: number },
): Promise<RateResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-bench-wrk-'));
  try {
    const script = path.join(dir, 'proxy.lua');
    await writeFile(script, lua(subject, origin));
    const to = subject.kind === 'http' ? (subject.proxy as Endpoint) : origin;
    const child = spawn(
      'wrk',
      [
        '-t1',
        `-c${options.connections}`,
        `-d${Math.max(1, Math.round(options.durationMs / 1000))}s`,
        '--timeout',
        '10s',
        '-s',
        script,
        `http://${to.host}:${to.port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), options.durationMs + 20_000);
    await once(child, 'exit');
    clearTimeout(killer);
    const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
    if (!line) throw new Error(`wrk printed no summary: ${out.slice(-500)}`);
    const s = JSON.parse(line.slice('WRKJSON '.length)) as Record<string, number>;
    const errors =
      (s.connect ?? 0) + (s.read ?? 0) + (s.write ?? 0) + (s.status ?? 0) + (s.timeout ?? 0);
    const elapsedMs = (s.duration_us ?? 0) / 1000;
    const ok = (s.requests ?? 0) - (s.status ?? 0);
    return {
      ops: ok,
      errors,
      elapsedMs,
      perSec: (ok / elapsedMs) * 1000,
      p50Ms: (s.p50_us ?? Number.NaN) / 1000,
      p99Ms: (s.p99_us ?? Number.NaN) / 1000,
      ...(errors > 0
        ? { firstError: `wrk errors: ${JSON.stringify({ ...s, requests: undefined })}` }
        : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
