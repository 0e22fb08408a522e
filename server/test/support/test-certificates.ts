/**
 * A private CA and certificates it issues, made by the openssl CLI at test time (nothing
 * secret is checked in, nothing expires between runs). P-256 keys: about 10 ms each.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate, PEM. */
  readonly pem: string;
}

export interface TestCa extends Issued {
  /** A server certificate signed by this CA for these names (DNS) and addresses (IP). */
  issue(name: string, subjectAltNames: { dns?: string[]; ips?: string[] }): Promise<Issued>;
}

/**
 * Whether the openssl CLI is there: `skip` for the tests that need it. node:crypto makes
 * keys but cannot issue certificates, so without openssl these tests are skipped, saying why.
 */
export async function needsOpenssl(): Promise<string | false> {
  try {
    await run('openssl', ['version']);
    return false;
  } catch {
    return 'needs the openssl command';
  }
}

/** A folder for certificates; dispose() removes it and everything in it. */
export async function certificateFolder(): Promise<{
  createCa(name: string): Promise<TestCa>;
  dispose(): Promise<void>;
}> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-certs-'));
  return {
    createCa: (name) => createCa(dir, name),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function createCa(dir: string, name: string): Promise<TestCa> {
  const certFile = path.join(dir, `${name}-ca.pem`);
  const keyFile = path.join(dir, `${name}-ca.key`);
  await run('openssl', [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    `/CN=IPCola test CA ${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const ca: TestCa = {
    certFile,
    keyFile,
    pem: await readFile(certFile, 'utf8'),
    async issue(leaf, { dns = [], ips = [] }) {
      const base = path.join(dir, `${name}-${leaf}`);
      const extensions = `${base}.ext`;
      const names = [...dns.map((n) => `DNS:${n}`), ...ips.map((ip) => `IP:${ip}`)].join(',');
      await writeFile(
        extensions,
        `subjectAltName=${names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
      );
      await run('openssl', [
        'req',
        ...EC_KEY,
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.csr`,
        '-subj',
        `/CN=${leaf}`,
      ]);
      await run('openssl', [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        certFile,
        '-CAkey',
        keyFile,
        '-CAcreateserial',
        '-out',
        `${base}.pem`,
        '-days',
        '2',
        '-extfile',
        extensions,
      ]);
      return {
        certFile: `${base}.pem`,
        keyFile: `${base}.key`,
        pem: await readFile(`${base}.pem`, 'utf8'),
      };
    },
  };
  return ca;
}
