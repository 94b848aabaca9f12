# mailfleet: one image for the relay, the operator and every subcommand.
# Build: docker build -t mailfleet .     Run: docker run mailfleet relay --config /etc/mailfleet/relay.yaml
# Node 24 is the current LTS; the project also runs on Node >= 20.19.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY cli ./cli
COPY relay ./relay
COPY operator ./operator
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/cli ./dist/cli
COPY --from=build /src/dist/relay ./dist/relay
COPY --from=build /src/dist/operator ./dist/operator
# Runs as the image's unprivileged "node" user (uid 1000); the root filesystem can be
# read-only: the relay writes only to its spool, which belongs on a volume.
RUN mkdir -p /var/spool/mailfleet && chown node:node /var/spool/mailfleet
USER 1000:1000
VOLUME ["/var/spool/mailfleet"]
# The operator renders relay pods that bind 10000 + port (no capability for ports below 1024).
EXPOSE 10587 10465 9090
# Node 24's V8 lets the young generation grow to 128 MiB per thread (Node 20: 32 MiB); under
# load that costs the relay ~80 MiB of peak RSS and no throughput (npm run bench with
# BENCH_NODE measures both; the benchmarks start the relay with these same flags).
ENTRYPOINT ["node", "--max-semi-space-size=16", "/app/dist/cli/main.js"]
CMD ["--help"]
