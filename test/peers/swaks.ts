import { binary } from './availability.js';
import { run } from './proc.js';

export const SWAKS_BINARIES = ['swaks'];

/** Runs swaks to completion; the exit code is the result (0 sent, 28 AUTH refused, ...). */
export async function runSwaks(args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await run(binary('swaks'), args, { timeoutMs: opts.timeoutMs ?? 30_000 });
  return { code, stdout, stderr };
}
