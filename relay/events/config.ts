/**
 * The `events` section of the relay config: where the relay sends what became of each message
 * (webhooks), and how much it keeps for them while they cannot be reached.
 */
import { z } from 'zod';
import { strict } from '../config-strict.js';
import { byteSize, duration } from '../config-units.js';
import { EVENT_TYPES } from './event.js';

/** Key ids go into the signature header beside `t`: a token of their own. */
export const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

export const signingKeySchema = strict({
  id: z
    .string()
    .regex(KEY_ID, 'a key id: 1 to 64 letters, digits, _ or -')
    .refine((id) => id !== 't', '`t` is the timestamp\'s name in the signature header')
    .describe('Names the key in the `Mailfleet-Signature` header, so a receiver knows which of its keys to check with (rotation: add the new key, then remove the old one).'),
  secretFile: z.string().describe('A file (a Secret key) holding the HMAC-SHA256 key: at least 32 characters, read at start and on reload.'),
});

export const webhookSchema = strict({
  name: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'lower-case letters, digits and dashes, as a Kubernetes name')
    .describe('Names the webhook in metrics and logs, and its place in the outbox: renaming it starts it afresh.'),
  url: z
    .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
    .describe('Where batches of events are POSTed as JSON. https unless the receiver is in the cluster or on loopback.'),
  senderDomains: z.array(z.string().min(1)).optional().describe('Only events of mail from these sender domains (and their subdomains). Omitted: every event.'),
  types: z.array(z.enum(EVENT_TYPES)).min(1).optional().describe('Only these event types. Omitted: every type.'),
  signingKeys: z.array(signingKeySchema).min(1).max(4).describe('Every batch is signed with each of these keys (docs/events.md says how to verify).'),
  caFile: z.string().optional().describe('Extra PEM CA certificates trusted for this https URL (a private CA).'),
  timeout: duration.default(10).describe('How long to wait for the answer to one batch; a batch not answered in time is sent again.'),
  batchSize: z.number().int().min(1).max(1000).default(100).describe('Most events in one POST.'),
  maxBackoff: duration.default(300).describe('Longest wait between attempts after failures (it doubles from one second).'),
});

export const eventsSchema = strict({
  webhooks: z.array(webhookSchema).default([]).describe('Where events go. None: the relay writes no events at all.'),
  maxOutboxBytes: byteSize
    .default(256 * 1024 * 1024)
    .describe('Most bytes of events kept in the spool for webhooks that are not taking them; past it the oldest are dropped and counted (intake never waits for webhooks).'),
}).superRefine((events, ctx) => {
  const names = new Set<string>();
  events.webhooks.forEach((w, i) => {
    if (names.has(w.name)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `webhook ${w.name} is listed twice` });
    names.add(w.name);
    const ids = new Set<string>();
    w.signingKeys.forEach((k, j) => {
      if (ids.has(k.id)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'signingKeys', j, 'id'], message: `key id ${k.id} is used twice` });
      ids.add(k.id);
    });
  });
});

export type EventsConfig = z.output<typeof eventsSchema>;
export type WebhookConfig = z.output<typeof webhookSchema>;
