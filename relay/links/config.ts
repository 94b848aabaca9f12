/**
 * The `links` section of the relay config (the public HTTP endpoint that serves the links the
 * relay puts in mail: one-click unsubscribe, RFC 8058) and a sender domain's `unsubscribe`.
 */
import { z } from 'zod';
import { strict } from '../config-strict.js';

/** Loopback hosts, where a test or a developer may use http. */
const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;

/** Where the links endpoint is reached: https (receivers ignore plain links), http only to a loopback host for tests; a base, no query or fragment. */
const baseUrl = z
  .url({ protocol: /^https?$/, error: 'must be an https:// URL' })
  .refine((u) => u.startsWith('https:') || LOOPBACK.test(new URL(u).host.replace(/:\d+$/, '')), 'must be https; http only to a loopback host, for tests')
  .refine((u) => !new URL(u).search && !new URL(u).hash, 'a base URL: no query and no fragment');

export const linksSchema = strict({
  keyFile: z
    .string()
    .describe('A file (a Secret shared by the fleet) holding the key that signs the tokens in the links, at least 32 characters: any relay of the fleet then serves a link without a lookup.'),
  address: z
    .string()
    .regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address')
    .default('127.0.0.1')
    .describe('Address of the links endpoint. Loopback unless set: in Kubernetes the operator sets 0.0.0.0 so its Service reaches it.'),
  port: z.number().int().min(0).max(65535).default(8090).describe('Port of the links endpoint (plain HTTP: TLS is the Ingress\'s).'),
  publicHost: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$/, 'a host name')
    .optional()
    .describe("The public host name of the links endpoint (its Ingress or load balancer): `mailfleet records` recommends a CNAME naming it for each unsubscribe and tracking host under a sender domain."),
});

export const unsubscribeSchema = strict({
  url: baseUrl
    .describe("The public base URL of the fleet's `links` endpoint for this domain, e.g. https://links.example.com (an Ingress with a certificate). Messages name URL/u/TOKEN in List-Unsubscribe."),
  mailto: z
    .boolean()
    .optional()
    .describe('Also name `mailto:unsubscribe@RETURN-PATH?subject=TOKEN` (a `bounces` listener takes it) for mail programs without one-click. Omitted: when the domain has a returnPath.'),
});

export const trackingSchema = strict({
  url: baseUrl
    .describe("The tracking host's base URL, e.g. https://t.example.com: a name of the sender domain's own (a CNAME to the fleet's `links` endpoint) that the links and the pixel point to."),
  opens: z.boolean().default(true).describe('Add a pixel to HTML mail; its loading makes an `opened` event.'),
  clicks: z.boolean().default(true).describe('Rewrite the links of HTML and text parts; following one makes a `clicked` event and a 307 redirect to the link.'),
  excludeDomains: z
    .array(z.string().min(1))
    .default([])
    .describe('Links to these domains (and their subdomains) are left as they are. One link is kept with the attribute `data-mailfleet-track="off"`.'),
});

export type TrackingConfig = z.output<typeof trackingSchema>;
export type LinksConfig = z.output<typeof linksSchema>;
export type UnsubscribeConfig = z.output<typeof unsubscribeSchema>;
