/**
 * Reading the spool as a start finds it (scan: changes nothing, safe beside a running relay),
 * and tidying it for a start (recover: the main thread, before it takes mail and before the
 * queue runs). What recovery hands on: the live messages, oldest first, and each journal
 * segment's counts, all sealed, for the queue side's done marks (relay/spool/journal-marks.ts).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { markOnDisk, removeFinished, scanJournal, type SegmentCount } from './journal-format.js';
import { readQueueFile, readState, SpoolFileInvalid } from './file.js';
import type { SpoolEntry, SpoolLayout } from './layout.js';

export interface SpoolScan {
  entries: SpoolEntry[];
  /** Records a crash cut short (never acknowledged). */
  discardedPartial: number;
  /** Message files that fail validation. */
  corrupt: string[];
  /** Journal copies of messages that also have a file of their own (moved out, mark lost): the file wins. */
  shadowed: SpoolEntry[];
  /** Journal segments with damage before their end. */
  damagedSegments: string[];
  /** Every journal segment with its counts. */
  segments: SegmentCount[];
}

export interface RecoveryReport {
  entries: SpoolEntry[];
  discardedPartial: number;
  corrupt: string[];
  /** The journal segments left, with their counts: the queue side deletes each once its mail is out. */
  segments: SegmentCount[];
}

const isStateName = (n: string) => n.endsWith('.state') || n.endsWith('.state.tmp');

/** Every message in the spool (files in q/ with their state, live journal records), without bodies. Changes nothing. */
export async function scanSpool(layout: SpoolLayout): Promise<SpoolScan> {
  const names = await fsp.readdir(layout.queueDir);
  const ids = names.filter((n) => !isStateName(n));
  const withState = new Set(names.filter((n) => n.endsWith('.state')).map((n) => n.slice(0, -6)));
  const entries: SpoolEntry[] = [];
  const corrupt: string[] = [];
  // Many files at once: a restart with a large queue should not take minutes.
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        try {
          const { envelope, bodyLength } = await readQueueFile(layout.messagePath(id));
          const state = withState.has(id) ? await readState(layout.statePath(id)) : null;
          if (state) Object.assign(envelope, state);
          entries.push({ envelope, bodyLength, hasState: state !== null });
        } catch (err) {
          // Gone since the listing: a running relay finished it (scan runs beside one).
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          // Only a file that fails validation is set aside; another I/O error stops the start
          // (a restart retries) rather than hiding an acknowledged message in corrupt/.
          if (!(err instanceof SpoolFileInvalid)) throw err;
          corrupt.push(id);
        }
      }
    }),
  );
  const journal = await scanJournal(layout.journalDir);
  // A message moved out to its own file whose done mark was lost: the file is the newer copy
  // (only a file that could be read: a damaged one must not hide a good journal copy).
  const inFiles = new Set(entries.map((e) => e.envelope.id));
  const shadowed: SpoolEntry[] = [];
  for (const r of journal.records) {
    const entry = { envelope: r.envelope, bodyLength: r.bodyLength, location: r.location };
    (inFiles.has(r.envelope.id) ? shadowed : entries).push(entry);
  }
  entries.sort((a, b) => a.envelope.receivedAt - b.envelope.receivedAt);
  return { entries, discardedPartial: journal.torn, corrupt, shadowed, damagedSegments: journal.damaged, segments: journal.segments };
}

/**
 * Tidies the spool for a start and reads what it holds: half-written files in tmp/ were never
 * acknowledged and are discarded; unreadable message files go to corrupt/ (and a copy of a
 * damaged segment, whose valid records are still delivered); shadowed journal copies are
 * marked done; finished segments and state files of finished messages are deleted. Run only
 * while nobody else writes the spool (at a start, or after the queue stopped at shutdown).
 */
export async function recoverSpool(layout: SpoolLayout): Promise<RecoveryReport> {
  const tmp = await fsp.readdir(layout.tmpDir);
  await Promise.all(tmp.map((f) => fsp.rm(path.join(layout.tmpDir, f), { force: true })));
  const report = await scanSpool(layout);
  for (const id of report.corrupt) await fsp.rename(layout.messagePath(id), path.join(layout.corruptDir, id)).catch(() => undefined);
  for (const segment of report.damagedSegments) await fsp.copyFile(path.join(layout.journalDir, segment), path.join(layout.corruptDir, `journal-${segment}`)).catch(() => undefined);
  await markOnDisk(
    layout.journalDir,
    report.shadowed.map((e) => [e.location!.segment, e.envelope.id]),
  );
  const shadowedIn = new Map<string, number>();
  for (const e of report.shadowed) shadowedIn.set(e.location!.segment, (shadowedIn.get(e.location!.segment) ?? 0) + 1);
  const segments = report.segments.map((s) => ({ ...s, done: s.done + (shadowedIn.get(s.segment) ?? 0) }));
  await removeFinished(
    layout.journalDir,
    segments.filter((s) => s.done >= s.records).map((s) => s.segment),
  );
  // A state file whose message is gone belongs to a finished message.
  const names = await fsp.readdir(layout.queueDir);
  const idSet = new Set(names.filter((n) => !isStateName(n)));
  for (const n of names) {
    if (n.endsWith('.state.tmp') || (n.endsWith('.state') && !idSet.has(n.slice(0, -6)))) await fsp.rm(path.join(layout.queueDir, n), { force: true });
  }
  return {
    entries: report.entries,
    discardedPartial: tmp.length + report.discardedPartial,
    corrupt: [...report.corrupt, ...report.damagedSegments.map((s) => `journal-${s} (damaged; its valid records are kept)`)],
    segments: segments.filter((s) => s.done < s.records),
  };
}
