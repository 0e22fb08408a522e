import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { RunContext } from './context.ts';
import { type ProfileSummary, readProfile, summariseProfile } from './cpuprofile.ts';

/**
 * `--profile`: per process, the main thread's profile is the busiest one; it is summarised
 * per measurement, leaving start-up (database, transpiling) out.
 */
export async function summariseProfiles(
  profileDir: string,
  { results, warn }: RunContext,
): Promise<void> {
  for (const name of ['gateway', 'agent']) {
    const dir = path.join(profileDir, name);
    const files = (await readdir(dir).catch(() => [] as string[])).filter((f) =>
      f.endsWith('.cpuprofile'),
    );
    let best: {
      file: string;
      profile: Awaited<ReturnType<typeof readProfile>>;
      busy: number;
    } | null = null;
    for (const file of files) {
      const profile = await readProfile(path.join(dir, file));
      const busy = summariseProfile(profile).totalMs;
      if (!best || busy > best.busy) best = { file: path.join(dir, file), profile, busy };
    }
    if (!best) {
      warn(`no CPU profile was written for the ${name}`);
      continue;
    }
    const phases: Record<string, ProfileSummary> = {};
    for (const phase of results.phases) {
      phases[phase.name] = summariseProfile(best.profile, phase);
    }
    results.profiles[name] = { file: best.file, phases };
  }
}
