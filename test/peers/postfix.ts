import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { binary, findBinary } from './availability.js';
import { freePort, waitForPort } from './ports.js';
import { forgetOnProcessExit, isAlive, onProcessExit, run, signal, terminate } from './proc.js';
import { uidOf } from './users.js';

/** Binaries a private Postfix instance needs (for describePeer). */
export const POSTFIX_BINARIES = ['/usr/sbin/postfix', '/usr/sbin/postqueue', '/usr/lib/postfix/sbin/master'];

export interface PostfixOptions {
  /** Listener port on 127.0.0.1 (default: a free port). */
  port?: number;
  /** Next hop for all mail, "127.0.0.1:PORT" (brackets are added: no MX lookup). */
  relayhost?: string;
  /** Clients that may relay anywhere (default 127.0.0.0/8). */
  mynetworks?: string;
  hostname?: string;
  /** More main.cf settings; they override the defaults. */
  extraMain?: Record<string, string>;
}

export interface PostfixInstance {
  port: number;
  /** PID of the master; it leads a process group with all the other Postfix daemons. */
  pid: number;
  /** Instance root: conf/ (main.cf, master.cf), spool/, data/, maillog. */
  dir: string;
  /** The instance's own log (maillog_file). */
  maillog(): string;
  /** Messages still in the queue (maildrop, incoming, active, deferred, hold). */
  queueCount(): Promise<number>;
  /** `postqueue -f`: retry deferred mail now, also to destinations marked dead. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

// Services of Debian's master.cf that a relay needs, none chrooted (the instance lives in /tmp).
const MASTER_SERVICES = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

/** "127.0.0.1:2525" -> "[127.0.0.1]:2525": brackets turn off MX lookups for the next hop. */
function bracket(relayhost: string): string {
  if (relayhost === '' || relayhost.startsWith('[')) return relayhost;
  const colon = relayhost.lastIndexOf(':');
  return colon < 0 ? `[${relayhost}]` : `[${relayhost.slice(0, colon)}]${relayhost.slice(colon)}`;
}

function mainCf(dir: string, opts: PostfixOptions): string {
  const hostname = opts.hostname ?? 'postfix.peer.test';
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: `${dir}/spool`,
    data_directory: `${dir}/data`,
    command_directory: '/usr/sbin',
    daemon_directory: '/usr/lib/postfix/sbin',
    meta_directory: '/etc/postfix',
    shlib_directory: '/usr/lib/postfix',
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    myhostname: hostname,
    myorigin: '$myhostname',
    mydestination: '',
    local_recipient_maps: '',
    local_transport: 'error:local delivery disabled',
    alias_maps: '',
    alias_database: '',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mynetworks: opts.mynetworks ?? '127.0.0.0/8',
    relay_domains: '',
    relayhost: bracket(opts.relayhost ?? ''),
    // permit_mynetworks relays anything; others may only send to relay_domains.
    smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
    smtpd_recipient_restrictions: '',
    smtp_dns_support_level: 'disabled',
    maillog_file: `${dir}/maillog`,
    // Postfix refuses a maillog_file outside these prefixes (fatal, printed only on a tty).
    maillog_file_prefixes: `/var, /dev/stdout, ${dir}`,
    biff: 'no',
    smtputf8_enable: 'no',
    in_flow_delay: '0',
    default_destination_concurrency_limit: '20',
    smtp_tls_security_level: 'none',
    smtpd_tls_security_level: 'none',
    ...opts.extraMain,
  };
  if (hostname.includes('.') && !('mydomain' in settings)) settings.mydomain = hostname.slice(hostname.indexOf('.') + 1);
  return Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
}

function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    n += entry.isDirectory() ? countFiles(path.join(dir, entry.name)) : 1;
  }
  return n;
}

/** A private Postfix instance in a temp dir, listening on 127.0.0.1 (needs root). */
export async function startPostfix(opts: PostfixOptions = {}): Promise<PostfixInstance> {
  const postfix = binary('/usr/sbin/postfix');
  const postqueue = binary('/usr/sbin/postqueue');
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'mailfleet-postfix-'));
  // Daemons run as postfix and must traverse the instance dir to reach the queue. The config
  // sits in conf/, apart from spool/ and data/: Postfix wants the config tree all root-owned.
  chmodSync(dir, 0o755);
  const conf = `${dir}/conf`;
  mkdirSync(conf);
  writeFileSync(`${conf}/main.cf`, mainCf(dir, opts));
  writeFileSync(`${conf}/master.cf`, `127.0.0.1:${port} inet n - n - - smtpd\n${MASTER_SERVICES}`);
  // Postfix re-reads a main.cf changed within the last second until it "cools down"
  // (5 x 300 ms in each of several processes: 2.2 s instead of 0.3 s per start): backdate it.
  const past = new Date(Date.now() - 60_000);
  utimesSync(`${conf}/main.cf`, past, past);
  utimesSync(`${conf}/master.cf`, past, past);
  // `postfix start` creates the queue directories below spool/ itself (post-install).
  mkdirSync(`${dir}/spool`);
  mkdirSync(`${dir}/data`);
  chownSync(`${dir}/data`, uidOf('postfix'), 0);
  const maillog = (): string => (existsSync(`${dir}/maillog`) ? readFileSync(`${dir}/maillog`, 'utf8') : '');
  const pidFile = `${dir}/spool/pid/master.pid`;
  const masterPid = (): number | undefined => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) || undefined : undefined);

  // Postfix prints fatal errors only to a tty or its log; a config error may leave no log.
  // On failure, re-run `postfix check` under script(1) for a pty and report both.
  const diagnose = async (): Promise<string> => {
    const script = findBinary('script');
    const check = script ? await run(script, ['-qec', `${postfix} -c ${conf} check`, '/dev/null']) : undefined;
    return `\n--- maillog ---\n${maillog()}${check ? `--- postfix check ---\n${check.stdout}` : ''}`;
  };
  const fail = async (what: string): Promise<never> => {
    const pid = masterPid();
    if (pid) signal(-pid, 'SIGKILL');
    const details = await diagnose();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${what}${details}`);
  };
  const started = await run(postfix, ['-c', conf, 'start']);
  if (started.code !== 0) await fail(`postfix -c ${conf} start exited ${started.code}: ${started.stdout}${started.stderr}`);
  const pid = masterPid() ?? (await fail('postfix started but wrote no master.pid'));
  onProcessExit(pid, () => {
    signal(-pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await waitForPort(port, { alive: () => isAlive(pid), what: 'postfix' });
  } catch (err) {
    forgetOnProcessExit(pid);
    await fail((err as Error).message);
  }

  let stopped = false;
  return {
    port,
    pid,
    dir,
    maillog,
    async queueCount() {
      const queues = ['maildrop', 'incoming', 'active', 'deferred', 'hold'];
      return queues.reduce((n, q) => n + countFiles(`${dir}/spool/${q}`), 0);
    },
    async flush() {
      const r = await run(postqueue, ['-c', conf, '-f']);
      if (r.code !== 0) throw new Error(`postqueue -f exited ${r.code}: ${r.stderr}`);
    },
    async stop() {
      // Once only: the PID may belong to another process later.
      if (stopped) return;
      stopped = true;
      // What `postfix stop` does (SIGTERM to the master, which stops its process group),
      // minus its 1 s sleep between checks.
      await terminate(pid);
      forgetOnProcessExit(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
