/**
 * The certificate the hub and the API serve TLS with (TLS_CERT_FILE, TLS_KEY_FILE). Read
 * and checked at start-up, so that a missing, unreadable or mismatched file stops the
 * server with one line naming the variable instead of failing each handshake later. Read
 * again when either file changes (a renewal), without a restart: open connections keep
 * the certificate they started with, new ones get the new one.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, type Stats, unwatchFile, watchFile } from 'node:fs';
import type { RequestListener, Server, ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  createSecureContext,
  type SecureContextOptions,
  type TlsOptions,
  type Server as TlsServer,
} from 'node:tls';
import { ConfigError, type TlsFiles } from '../config/index.ts';
import type { Logger } from '../log/index.ts';

/** For https.createServer: the certificate chain and key as read at start-up, and `serve`. */
export interface ServedCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Gives this server each newer certificate the files hold from now on. */
  serve(server: TlsServer): void;
}

/** What a listener serves TLS with: a certificate and key, and maybe renewals (`serve`). */
export type TlsServing = SecureContextOptions & TlsOptions & { serve?(server: TlsServer): void };

/** An HTTPS server with the certificate, handed to `serve` for renewals. */
export function createTlsServer(
  { serve, ...tls }: TlsServing,
  options: ServerOptions,
  listener?: RequestListener,
): Server {
  const server = createHttpsServer({ ...tls, ...options }, listener);
  serve?.(server);
  return server;
}

/** Stat polling survives a rename over the file (certbot, Kubernetes secret mounts). */
const POLL_INTERVAL_MS = 2_000;
/** A renewal writes the certificate and the key one after the other: read once both settled. */
const SETTLE_MS = 500;

/**
 * Loads and checks the pair (ConfigError naming the variable), then follows the files until
 * `keep`'s clean-up runs.
 */
export function servedCertificate(
  files: TlsFiles,
  logger: Logger,
  keep: (cleanup: () => Promise<void>) => void,
): ServedCertificate {
  let current = loadPair(files);
  describe(logger, current.leaf, 'serving TLS on the hub and the API');
  const servers = new Set<TlsServer>();
  let settle: NodeJS.Timeout | undefined;

  const reload = () => {
    let next: Pair;
    try {
      next = loadPair(files);
    } catch (error) {
      // Half-way through a renewal, or a mistake: the running certificate stays.
      logger.error({ reason: (error as Error).message }, 'TLS files not reloaded: kept the old');
      return;
    }
    if (next.cert.equals(current.cert) && next.key.equals(current.key)) return;
    current = next;
    for (const server of servers) server.setSecureContext({ cert: next.cert, key: next.key });
    describe(logger, next.leaf, 'TLS certificate reloaded');
  };
  const changed = (now: Stats, before: Stats) => {
    if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) {
      return;
    }
    clearTimeout(settle);
    settle = setTimeout(reload, SETTLE_MS);
    settle.unref();
  };
  const watched = [files.certFile, files.keyFile];
  for (const file of watched) {
    watchFile(file, { interval: POLL_INTERVAL_MS, persistent: false }, changed);
  }
  keep(async () => {
    clearTimeout(settle);
    for (const file of watched) unwatchFile(file, changed);
  });

  return {
    cert: current.cert,
    key: current.key,
    serve: (server) => void servers.add(server),
  };
}

interface Pair {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly leaf: X509Certificate;
}

function loadPair({ certFile, keyFile }: TlsFiles): Pair {
  const cert = readOrRefuse('TLS_CERT_FILE', certFile);
  const key = readOrRefuse('TLS_KEY_FILE', keyFile);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new ConfigError('TLS_CERT_FILE', `"${certFile}" holds no PEM certificate`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new ConfigError(
      'TLS_KEY_FILE',
      `"${keyFile}" holds no unencrypted PEM private key (a passphrase is not supported)`,
    );
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new ConfigError(
      'TLS_KEY_FILE',
      `"${keyFile}" is not the key of the certificate in TLS_CERT_FILE (${leaf.subject.replaceAll('\n', ', ')})`,
    );
  }
  try {
    // What the listeners will do with them: catches what OpenSSL alone refuses.
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError('TLS_CERT_FILE', `cannot be served: ${(error as Error).message}`);
  }
  return { cert, key, leaf };
}

function readOrRefuse(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(variable, `"${file}" cannot be read (${code})`);
  }
}

function describe(logger: Logger, leaf: X509Certificate, message: string): void {
  const validTo = new Date(leaf.validTo);
  const details = {
    subject: leaf.subject.replaceAll('\n', ', '),
    names: leaf.subjectAltName,
    validTo: validTo.toISOString(),
  };
  // Served anyway: agents and browsers will say why they refuse it, and a renewal is read.
  if (validTo.getTime() < Date.now()) logger.error(details, `${message}: the certificate EXPIRED`);
  else logger.info(details, message);
}
