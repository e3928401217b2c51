# Better Auth, as the fixture app in test/betterauth configures it, for
# docker-compose.yml. Build context: the repository root.
#
# It installs exactly what scripts/betterauth.sh installs (npm ci from the
# committed lockfile: better-auth, pg, and the Bun runtime from the npm
# package "bun") and runs server.ts on Bun with MIGRATE=1, so Better Auth's
# own migrator creates or updates its tables before it serves.
FROM node:20-bookworm-slim

WORKDIR /app
# .npmrc sets legacy-peer-deps: @better-auth/api-key pins older peers exactly.
COPY test/betterauth/package.json test/betterauth/package-lock.json test/betterauth/.npmrc ./
# The npm package "bun" puts the real runtime in place with a postinstall
# script; when npm skipped it, run it by hand (as scripts/betterauth.sh does).
RUN npm ci --no-audit --no-fund \
 && { node_modules/.bin/bun --version >/dev/null 2>&1 || (cd node_modules/bun && node install.js); } \
 && node_modules/.bin/bun --version \
 && npm cache clean --force
COPY test/betterauth/server.ts test/betterauth/access.ts ./

# The image's unprivileged user; it needs no write access to /app.
USER node
ENV HOST=0.0.0.0 \
    PORT=3000 \
    MIGRATE=1
EXPOSE 3000
CMD ["node_modules/.bin/bun", "server.ts"]
