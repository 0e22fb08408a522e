/**
 * The TCP connections a process holds, read from /proc (Linux): how end-to-end tests
 * check from outside that nothing leaked, i.e. that every client socket the gateway
 * accepted and every socket an exit node opened towards a target was closed again.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

export interface TcpConnection {
  localPort: number;
  remotePort: number;
  /** ESTABLISHED, CLOSE_WAIT, FIN_WAIT1 ... (listening sockets are left out). */
  state: string;
}

/** /proc/net/tcp state codes (include/net/tcp_states.h). */
const STATES: Readonly<Record<string, string>> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** Every non-listening TCP socket the process `pid` has open (an empty list once it exited). */
export async function tcpConnections(pid: number): Promise<TcpConnection[]> {
  const inodes = new Set<string>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode) inodes.add(inode);
  }
  const connections: TcpConnection[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const fields = line.trim().split(/\s+/);
      const [, local = '', remote = '', code = '', , , , , , inode = ''] = fields;
      if (!inodes.has(inode)) continue;
      const state = STATES[code] ?? code;
      if (state === 'LISTEN') continue;
      connections.push({
        localPort: Number.parseInt(local.split(':')[1] ?? '', 16),
        remotePort: Number.parseInt(remote.split(':')[1] ?? '', 16),
        state,
      });
    }
  }
  return connections;
}
