/**
 * `mailfleet hash-password` as people run it: typed at a real terminal (a pseudo-terminal from
 * Python's pty module, so stdin is a TTY as in a shell), and fed from a pipe as in scripts and
 * `docker run -i`.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CLI } from './support/process.js';

/**
 * Runs the CLI on a pseudo-terminal: answers each prompt (a regular expression) with its line
 * as typed (ending in a carriage return, as the Enter key sends), and returns everything the
 * terminal showed and the exit status.
 */
const PTY_DRIVER = `
import json, os, pty, re, select, sys, time
argv, answers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen, deadline = b'', time.time() + 60
def read_some():
    global seen
    r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
    if not r:
        return False
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return False
    seen += chunk
    return bool(chunk)
for prompt, line in answers:
    start = len(seen)
    while not re.search(prompt.encode(), seen[start:]) and time.time() < deadline:
        if not read_some():
            break
    os.write(fd, line.encode())
while time.time() < deadline and read_some():
    pass
_, status = os.waitpid(pid, 0)
print(json.dumps({'status': os.waitstatus_to_exitcode(status), 'terminal': seen.decode('utf-8', 'replace')}))
`;

function onTerminal(args: string[], answers: [prompt: string, line: string][]): Promise<{ status: number; terminal: string }> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', PTY_DRIVER, JSON.stringify([process.execPath, CLI, ...args]), JSON.stringify(answers)], { timeout: 90_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pty driver: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as { status: number; terminal: string });
    });
  });
}

/** Whether a `$scrypt$N=..,r=..,p=..$salt$key` hash is of this password. */
function hashMatches(hash: string, password: string): boolean {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([^$]+)\$([^$]+)$/.exec(hash);
  if (!m) return false;
  const key = Buffer.from(m[5]!, 'base64');
  return crypto.scryptSync(password, Buffer.from(m[4]!, 'base64'), key.length, { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]), maxmem: 64 * 1024 * 1024 }).equals(key);
}

describe('mailfleet hash-password', () => {
  it('at a terminal: asks twice without echoing the password, and prints the users-file line', async () => {
    const { status, terminal } = await onTerminal(['hash-password', '--user', 'app'], [
      ['password: $', 'correct horse\r'],
      ['again: $', 'correct horse\r'],
    ]);
    expect(status, terminal).toBe(0);
    expect(terminal).not.toContain('correct horse');
    expect(terminal).not.toMatch(/EAGAIN|Error/);
    const line = /^app:(\$scrypt\$\S+)\r?$/m.exec(terminal);
    expect(line, terminal).not.toBeNull();
    expect(hashMatches(line![1]!, 'correct horse')).toBe(true);
  });

  it('at a terminal: two different entries are refused, and nothing is printed to use', async () => {
    const { status, terminal } = await onTerminal(['hash-password', '--user', 'app'], [
      ['password: $', 'one\r'],
      ['again: $', 'two\r'],
    ]);
    expect(status, terminal).toBe(2);
    expect(terminal).toContain('the two passwords differ');
    expect(terminal).not.toContain('$scrypt$');
  });

  it('at a terminal: Ctrl-C gives up with exit 130 and prints no hash', async () => {
    const { status, terminal } = await onTerminal(['hash-password'], [['password: $', 'half\u0003']]);
    expect(status, terminal).toBe(130);
    expect(terminal).not.toContain('$scrypt$');
  });

  it('from a pipe: reads stdin as it is, one trailing newline dropped', async () => {
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [CLI, 'hash-password', '--user', 'app'], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
      child.stdin!.end('piped secret\n');
    });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stderr).toBe('');
    const line = /^app:(\$scrypt\$\S+)\n$/.exec(out.stdout);
    expect(line, out.stdout).not.toBeNull();
    expect(hashMatches(line![1]!, 'piped secret')).toBe(true);
  });
});
