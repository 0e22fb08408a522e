/** What the harness hands every measurement, and the shape of a measurement. */
import type { Endpoint, Subject } from './client.ts';
import type { Config } from './config.ts';
import type { Managed } from './processes.ts';
import type { Results, SubjectName } from './report.ts';

/** What every measurement gets: the run's settings and the report it writes into. */
export interface RunContext {
  config: Config;
  results: Results;
  /** Records a warning in the JSON and prints it. */
  warn(message: string): void;
}

/** The running subjects, pinned and answering; the target they all reach. */
export interface Subjects {
  origin: Endpoint;
  target: Managed;
  subjects: Record<SubjectName, Subject>;
  /** The processes under test behind each subject (none for direct). */
  procsOf: Record<SubjectName, Managed[]>;
  /** Our server's API (for /metrics). */
  ipcolaApi: Endpoint;
}

export type SubjectsContext = RunContext & Subjects;

/**
 * One row group of the report. `with-subjects` runs while every proxy is up (after the
 * shared warm-up when `warmUp` is set); `after-subjects` runs once they are all stopped,
 * alone on the proxy core.
 */
export type Measurement =
  | {
      name: string;
      stage: 'with-subjects';
      warmUp: boolean;
      run(ctx: SubjectsContext): Promise<void>;
    }
  | { name: string; stage: 'after-subjects'; run(ctx: RunContext): Promise<void> };

export const PEERS: SubjectName[] = ['direct', 'ipcola', 'squid', 'proxy-chain'];
export const WITH_SOCKS: SubjectName[] = [
  'direct',
  'ipcola',
  'ipcola-socks',
  'squid',
  'proxy-chain',
];

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
