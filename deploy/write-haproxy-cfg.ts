/** Writes deploy/haproxy.cfg from deploy/topology.ts (after the topology changes). */
import { writeFile } from 'node:fs/promises';
import { composeHaproxyConfig } from './cluster/haproxy-config.ts';
import { topology } from './topology.ts';

await writeFile(new URL('haproxy.cfg', import.meta.url), composeHaproxyConfig(topology));
