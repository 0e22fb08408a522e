# syntax=docker/dockerfile:1
# IPCola in one image: the server (default command) and the exit-node agent (compose
# overrides the command). docker-compose.yml runs the topology of deploy/topology.ts.

# Build: `npm ci` installs every workspace and builds the SDK and the portal (and the
# embedded database's template); the server is bundled into server/dist/main.js (what
# `npm start` runs: no TypeScript loader in the process, about 60 MB less RSS); then the
# development dependencies are dropped, without scripts (the workspaces' prepare scripts
# would build again without their build tools).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN npm ci --no-audit --no-fund \
 && npm run build --workspace @ipcola/server \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# Runtime: only what runs (the server's bundle; the agent's TypeScript runs through tsx),
# as the unprivileged `node` user.
FROM node:20-bookworm-slim AS runtime
# tini as PID 1 reaps zombies and passes SIGTERM to its one child, the node process
# itself: `npm start` would not pass it on, and the graceful shutdown would be skipped.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/migrations ./migrations
COPY --from=build /app/openapi ./openapi
COPY --from=build /app/packages/shared ./packages/shared
COPY --from=build /app/server ./server
COPY --from=build /app/agent ./agent
COPY --from=build /app/portal/package.json ./portal/package.json
COPY --from=build /app/portal/dist ./portal/dist
# The only place the server writes (the embedded database, when DATABASE_URL is unset).
RUN mkdir -p /app/data && chown node:node /app/data
USER node
# API and portal, HTTP proxy, SOCKS5, hub (where exit nodes dial in).
EXPOSE 8080 8000 1080 7000
ENTRYPOINT ["/usr/bin/tini", "--"]
# --initial-old-space-size=128: see the README (Running it for real).
CMD ["node", "--initial-old-space-size=128", "server/dist/main.js"]
