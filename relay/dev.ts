/**
 * The embedded development defaults behind `npm start`: a relay on loopback that needs no
 * cluster and no network. Port 2525 takes mail from loopback without AUTH (a development
 * listener), port 2587 offers STARTTLS with a certificate made on first start and requires
 * AUTH as user `dev`, mail from example.test is DKIM-signed (RSA and Ed25519 keys made on first
 * start), and delivered mail lands as .eml files in .mailfleet/outbox/.
 *
 * The defaults are also written as a config file, .mailfleet/relay.yaml, on every start: the
 * commands that read a relay's config (`mailfleet records`, `mailfleet suppressions`) use it
 * when no --config is given, and `mailfleet relay --config` takes it as a starting point.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import YAML from 'yaml';
import { parseConfig, type RelayConfig } from './config.js';
import { generateDkimKey, type DkimAlgorithm } from './dkim-keys.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import { hashPassword } from './users.js';

/** The development sender domain: mail from it (or its subdomains) is DKIM-signed. */
export const DEV_SENDER_DOMAIN = 'example.test';

export interface DevSetup {
  config: RelayConfig;
  /** The same configuration as a file (relay.yaml in the root), for the commands that read one. */
  configFile: string;
  user: string;
  password: string;
  certFile: string;
}

/** Where the development defaults live: .mailfleet in the working directory. */
export const devRoot = (): string => path.resolve('.mailfleet');
/** The development relay's configuration as a file, in its root. */
export const DEV_CONFIG_FILE = 'relay.yaml';

/**
 * Writes the development configuration (the input the defaults are parsed from, paths relative
 * to the root, so the file loads anywhere) as relay.yaml in the root: by rename, so a command
 * reading it meanwhile sees the old file or the new one.
 */
function writeConfigFile(root: string, raw: object): string {
  const file = path.join(root, DEV_CONFIG_FILE);
  const text =
    '# The development relay\'s configuration (`npm start`, `mailfleet relay` without --config),\n' +
    '# written on each start: your edits here are replaced. `mailfleet records` and `mailfleet\n' +
    '# suppressions` read it when given no --config; to change it, copy it elsewhere and run\n' +
    '# `mailfleet relay --config COPY` (relative paths are taken from the file\'s directory).\n' +
    YAML.stringify(raw, { lineWidth: 0 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
  return file;
}

/**
 * The development defaults keep their files (certificate, password, keys, spool, outbox) in
 * `root`; where it cannot be made or written (the container image, whose /app is read-only for
 * its user), there is nothing to run on: say so, and what to pass instead.
 */
function ensureWritable(root: string): void {
  let problem: string | undefined;
  try {
    fs.mkdirSync(root, { recursive: true });
    fs.accessSync(root, fs.constants.W_OK);
  } catch (err) {
    // Say which directory refused, and why: mkdir's own code under a read-only root is ENOENT.
    let dir = root;
    while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    let code = (err as NodeJS.ErrnoException).code;
    try {
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (denied) {
      code = (denied as NodeJS.ErrnoException).code ?? code;
    }
    const why = code === 'EROFS' ? 'is on a read-only file system' : code === 'EACCES' || code === 'EPERM' ? `is not writable for uid ${process.getuid?.() ?? '?'}` : `cannot be written (${code ?? (err as Error).message})`;
    problem = `${dir} ${why}`;
  }
  if (problem) {
    throw new MailfleetError(
      ErrorCodes.CONFIG_REQUIRED,
      `no --config given, and the development defaults cannot keep their files in ${root}: ${problem}`,
      'run `mailfleet relay --config FILE` (docs/configuration.md, examples/relay.yaml). In the container image: ' +
        'docker run -v mailfleet-spool:/var/spool/mailfleet -v $PWD/relay.yaml:/etc/mailfleet/relay.yaml:ro IMAGE relay --config /etc/mailfleet/relay.yaml. ' +
        'The development defaults (npm start) need a writable working directory.',
    );
  }
}

export async function devSetup(root = devRoot()): Promise<DevSetup> {
  ensureWritable(root);
  const tlsDir = path.join(root, 'tls');
  fs.mkdirSync(tlsDir, { recursive: true });
  const certFile = path.join(tlsDir, 'dev.crt');
  const keyFile = path.join(tlsDir, 'dev.key');
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      notAfterDate: new Date(Date.now() + 825 * 86400_000),
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
    });
    fs.writeFileSync(keyFile, pems.private, { mode: 0o600 });
    fs.writeFileSync(certFile, pems.cert);
  }
  const passwordFile = path.join(root, 'dev-password');
  // Hex: a password that starts with '-' would be taken for an option by swaks and friends.
  if (!fs.existsSync(passwordFile)) fs.writeFileSync(passwordFile, crypto.randomBytes(12).toString('hex') + '\n', { mode: 0o600 });
  const password = fs.readFileSync(passwordFile, 'utf8').trim();
  const usersFile = path.join(root, 'users');
  if (!fs.existsSync(usersFile)) fs.writeFileSync(usersFile, `dev:${await hashPassword(password)}\n`, { mode: 0o600 });

  // A sender domain whose DKIM keys are made on first start: mail from it arrives signed.
  const dkimDir = path.join(root, 'dkim');
  fs.mkdirSync(dkimDir, { recursive: true });
  const keys = (['rsa-sha256', 'ed25519-sha256'] as DkimAlgorithm[]).map((algorithm) => {
    const selector = algorithm === 'rsa-sha256' ? 'dev-rsa' : 'dev-ed25519';
    const file = path.join(dkimDir, `example.test.${selector}.key`);
    if (!fs.existsSync(file)) fs.writeFileSync(file, generateDkimKey(algorithm).privateKeyPem, { mode: 0o600 });
    return { selector, privateKeyFile: path.relative(root, file) };
  });

  const raw = {
    hostname: 'localhost',
    spool: { dir: 'spool', minFreeBytes: '50MiB' },
    listeners: [
      { name: 'dev', address: '127.0.0.1', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8', '::1'] },
      { name: 'submission', address: '127.0.0.1', port: 2587, tls: 'starttls', auth: 'required' },
    ],
    tls: { certFile: 'tls/dev.crt', keyFile: 'tls/dev.key' },
    auth: { usersFile: 'users' },
    senderDomains: [{ domain: DEV_SENDER_DOMAIN, dkim: { keys } }],
    delivery: { route: { type: 'file', dir: 'outbox' } },
    http: { address: '127.0.0.1', port: 9090 },
  };
  const config = parseConfig(raw, root, 'development defaults');
  const configFile = writeConfigFile(root, raw);
  return { config, configFile, user: 'dev', password, certFile };
}
