# mailfleet: one image for the relay, the operator and every subcommand.
# Build: docker build -t mailfleet .     Run: docker run mailfleet relay --config /etc/mailfleet/relay.yaml
# Node 24 is the current LTS; the project also runs on Node >= 20.19.

# The build stage's base. A machine that reaches the npm registry only through its own CA or
# proxy builds FROM a copy of it with those settings (test/image/base-image.sh makes one), so
# they never reach the final stage.
ARG BUILD_IMAGE=node:24-bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY cli ./cli
COPY relay ./relay
COPY operator ./operator
# Production dependencies only, without what only a compiler or a debugger reads (type
# declarations, source maps): about 40 MB of the ~100 MB.
RUN npm run build && npm prune --omit=dev --ignore-scripts \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

# The final stage is the Debian that node:24-bookworm-slim is made from, with only the node
# binary from it: no npm, no C headers (about 75 MB). Same user as the Node image (node, uid
# 1000); the root filesystem can be read-only: the relay writes only to its spool, which
# belongs on a volume.
FROM debian:bookworm-slim
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && mkdir -p /var/spool/mailfleet && chown node:node /var/spool/mailfleet
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# One malloc arena for the whole process. glibc gives each thread that allocates its own arena
# (up to 8 per core), and the relay's main thread, queue thread, libuv pool and V8's helpers
# each keep theirs: peak RSS under the bench on Node 24 was 204-205 MiB with the default, 188-189
# with one arena, no more CPU per message (npm run bench:cpu, three runs each, 2026-12-07;
# docs/architecture.md). The benchmarks run the relay with this environment too.
ENV NODE_ENV=production MALLOC_ARENA_MAX=1
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/cli ./dist/cli
COPY --from=build /src/dist/relay ./dist/relay
COPY --from=build /src/dist/operator ./dist/operator
USER 1000:1000
VOLUME ["/var/spool/mailfleet"]
# The operator renders relay pods that bind 10000 + port (no capability for ports below 1024).
EXPOSE 10587 10465 9090
# Node 24's V8 lets the young generation grow to 128 MiB per thread (Node 20: 32 MiB), and the
# relay has two threads. A 4 MiB semi-space took ~40 MiB off the relay's peak RSS under the
# bench against 16 MiB (~200 vs ~240 MiB on Node 24) with no CPU per message lost (npm run
# bench:cpu, three alternating runs each, 2026-12-06; docs/architecture.md). The benchmarks
# start the relay with these same flags.
ENTRYPOINT ["node", "--max-semi-space-size=4", "/app/dist/cli/main.js"]
CMD ["--help"]
