import { describe, expect, it } from 'vitest';
import { finalEntrypoint, finalEnv, imageEnv } from './dockerfile.js';

const DOCKERFILE = `FROM node:24 AS build
ENV BUILD_ONLY=1
ENTRYPOINT ["npm"]
FROM debian:bookworm-slim
# ENV COMMENTED=1
ENV NODE_ENV=production MALLOC_ARENA_MAX=1
ENV LATER=x
ENTRYPOINT ["node", "--max-semi-space-size=4", "/app/dist/cli/main.js"]
`;

describe('the Dockerfile as the benchmarks read it', () => {
  it("reads the last stage's ENV pairs and entrypoint, not the build stage's or a comment's", () => {
    expect(finalEnv(DOCKERFILE)).toEqual({ NODE_ENV: 'production', MALLOC_ARENA_MAX: '1', LATER: 'x' });
    expect(finalEntrypoint(DOCKERFILE)).toEqual(['node', '--max-semi-space-size=4', '/app/dist/cli/main.js']);
  });

  it('refuses an ENV it cannot read as the image would (quotes, variables), rather than guess', () => {
    expect(() => finalEnv('FROM x\nENV A="b c"\n')).toThrow(/KEY=value pairs/);
    expect(() => finalEnv('FROM x\nENV PATH=$PATH:/x\n')).toThrow(/KEY=value pairs/);
  });

  it("reads this project's image: one malloc arena", () => {
    expect(imageEnv().MALLOC_ARENA_MAX).toBe('1');
  });
});
