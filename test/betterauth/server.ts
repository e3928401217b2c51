// Better Auth identity server used by the Go end-to-end tests and `make demo`.
//
// It is configured the way an application team would configure Better Auth
// 1.7.25 in front of the authz sidecar: email/password sign-in, organizations
// with teams and dynamic (per-organization) roles, the jwt plugin issuing
// EdDSA tokens that carry the active organization and session id, the bearer
// plugin for server-to-server calls, and the admin plugin for bans.
//
// Run with the Bun binary shipped by the npm package `bun`:
//
//   node_modules/.bin/bun server.ts
//
// Environment (all optional except DATABASE_URL):
//   PORT                    listen port (3000)
//   HOST                    listen address (127.0.0.1)
//   DATABASE_URL            postgres://... URL of the Better Auth database
//   BETTER_AUTH_SECRET      signing/encryption secret (fixed dev secret)
//   BETTER_AUTH_URL         public base URL (http://127.0.0.1:$PORT); JWT iss/aud
//   TRUSTED_ORIGINS         extra comma-separated origins for cookie requests
//   MIGRATE=1               create/alter tables with Better Auth's migrator, then serve
//   MIGRATE_ONLY=1          create/alter tables, then exit
//   JWT_EXPIRATION          jwt lifetime, jose time span ("15m"; tests use "30s")
//   JWKS_ROTATION_INTERVAL  seconds a signing key is used before a new one is minted (off)
//   JWKS_GRACE_PERIOD       seconds a rotated key stays in /jwks after it expired (2592000)
//   ADMIN_EMAILS            comma-separated emails that sign up with users.role = "admin"
//   ADMIN_USER_IDS          comma-separated user ids treated as global admins
//   INVALIDATION_REDIS_URL  publish cache invalidations for the authz sidecar to this Redis
//                           (redis://host:port/db; unset: no publishing)
//   INVALIDATION_CHANNEL    pub/sub channel (authz:invalidate; the sidecar's --invalidation-channel)
//   INVALIDATION_REDIS_PREFIX  key prefix of the sidecar's Redis tier (authz:; its --redis-prefix)
//   INVALIDATION_MARKER_TTL seconds an invalidation marker lives (3600; > the sidecar's --l2-ttl)
import { RedisClient } from "bun";
import { betterAuth } from "better-auth";
import { createAuthMiddleware, getSessionFromCtx, isAPIError } from "better-auth/api";
import { getMigrations } from "better-auth/db/migration";
import { admin, bearer, jwt, organization } from "better-auth/plugins";
import { createAccessControl } from "better-auth/plugins/access";
import {
  adminAc,
  defaultStatements,
  memberAc,
  ownerAc,
} from "better-auth/plugins/organization/access";
import { Pool } from "pg";

const DEV_SECRET = "authz-sidecar-dev-secret-do-not-use-in-production";

function env(name: string, fallback = ""): string {
  const value = process.env[name];
  return value === undefined || value === "" ? fallback : value;
}

function list(name: string): string[] {
  return env(name)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

// seconds parses a positive whole number of seconds, or returns undefined when
// the variable is unset so Better Auth keeps its own default.
function seconds(name: string): number | undefined {
  const raw = env(name);
  if (raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`${name} must be a positive whole number of seconds, got ${JSON.stringify(raw)}`);
  }
  return n;
}

const port = Number(env("PORT", "3000"));
const host = env("HOST", "127.0.0.1");
const databaseURL = env("DATABASE_URL");
if (databaseURL === "") {
  console.error("DATABASE_URL is required (postgres://user@host:port/db)");
  process.exit(2);
}
const secret = env("BETTER_AUTH_SECRET", DEV_SECRET);
if (secret.length < 32) {
  console.error("BETTER_AUTH_SECRET must be at least 32 characters");
  process.exit(2);
}
const baseURL = env("BETTER_AUTH_URL", `http://127.0.0.1:${port}`);
const adminEmails = new Set(list("ADMIN_EMAILS").map((e) => e.toLowerCase()));

// Access control. The statements are Better Auth's organization defaults
// (which its own endpoints check: member:create for invitations, ac:create for
// create-role, ...) plus the application's own resource, `leave`. The roles
// mirror the sidecar's policies.yaml:
//   member = leave:request, leave:read
//   admin  = member + leave:approve + member:*
//   owner  = admin + organization:delete
// and each keeps the permissions Better Auth grants its built-in role of the
// same name, so invite/accept/update-role/remove-member/create-role work.
type Statements = Record<string, readonly string[]>;

function union(...parts: Statements[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const part of parts) {
    for (const [resource, actions] of Object.entries(part)) {
      out[resource] = [...new Set([...(out[resource] ?? []), ...actions])];
    }
  }
  return out;
}

const statements = union(defaultStatements, {
  organization: ["delete", ...defaultStatements.organization],
  member: [...defaultStatements.member],
  leave: ["request", "read", "approve"],
});
const ac = createAccessControl(statements);

const memberPerms = union(memberAc.statements, { leave: ["request", "read"] });
const adminPerms = union(adminAc.statements, memberPerms, {
  leave: ["approve"],
  member: [...statements.member],
});
const ownerPerms = union(ownerAc.statements, adminPerms, { organization: ["delete"] });

const member = ac.newRole(memberPerms);
const adminRole = ac.newRole(adminPerms);
const owner = ac.newRole(ownerPerms);

const pool = new Pool({ connectionString: databaseURL });

// ---------------------------------------------------------------------------
// Cache invalidation for the authz sidecar (docs/consistency.md). Copy this
// section and the hooks marked "invalidation" below into an application to
// make a revoked role or a removed member take effect on every sidecar
// replica within milliseconds instead of after the cache TTLs.
//
// For each change it (1) raises the sidecar's Redis markers, so that no
// replica serves a shared (L2) cache entry loaded before the change, even
// one that misses the message, then (2) publishes the message, on which
// every replica drops its in-process (L1) entries. It runs after Better Auth
// has committed the change. A failure is logged, not thrown: the change is
// made; the sidecars then see it after their cache TTLs (or through the
// PostgreSQL triggers, sql/invalidation-triggers.sql, if installed).
const invalidationRedisURL = env("INVALIDATION_REDIS_URL");
const invalidationChannel = env("INVALIDATION_CHANNEL", "authz:invalidate");
const invalidationPrefix = env("INVALIDATION_REDIS_PREFIX", "authz:");
const invalidationMarkerTTL = (seconds("INVALIDATION_MARKER_TTL") ?? 3600) * 1000;
const invalidationRedis = invalidationRedisURL === "" ? null : new RedisClient(invalidationRedisURL);

// The sidecar's marker update (internal/cache.MarkScript): set the marker to
// ARGV[1] (unix nanoseconds) unless it holds a later time, for ARGV[2] ms.
const MARK_SCRIPT = `local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then
	return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

type Invalidation =
  | { kind: "member"; user: string; org: string }
  | { kind: "user"; user: string }
  | { kind: "org"; org: string; slugs?: string[] }
  | { kind: "role"; org: string; role?: string };

async function invalidate(change: Invalidation): Promise<void> {
  if (invalidationRedis === null) return;
  const message = { v: 1, id: crypto.randomUUID(), ...change, src: "better-auth", at: Date.now() };
  const markers =
    change.kind === "member" || change.kind === "user"
      ? [`${invalidationPrefix}inv:u:${change.user}`]
      : [change.org, ...(change.kind === "org" ? (change.slugs ?? []) : [])].map(
          (ref) => `${invalidationPrefix}inv:o:${ref}`,
        );
  const now = (BigInt(Date.now()) * 1_000_000n).toString();
  try {
    for (const key of markers) {
      await invalidationRedis.send("EVAL", [MARK_SCRIPT, "1", key, now, String(invalidationMarkerTTL)]);
    }
    await invalidationRedis.publish(invalidationChannel, JSON.stringify(message));
  } catch (err) {
    console.error(`authz invalidation ${JSON.stringify(message)} not published: ${(err as Error).message}`);
  }
}

// Custom roles have no organization hooks: they are caught after their
// endpoints. A custom role change invalidates the whole organization.
const ROLE_PATHS = new Set(["/organization/create-role", "/organization/update-role", "/organization/delete-role"]);
const invalidateRoleChanges = createAuthMiddleware(async (ctx) => {
  if (!ROLE_PATHS.has(ctx.path) || isAPIError(ctx.context.returned)) return;
  const body = (ctx.body ?? {}) as { organizationId?: string; role?: string; roleName?: string };
  const returned = ctx.context.returned as { roleData?: { organizationId?: string; role?: string } } | undefined;
  const org =
    body.organizationId ??
    returned?.roleData?.organizationId ??
    (await getSessionFromCtx(ctx))?.session.activeOrganizationId ??
    undefined;
  if (!org) return;
  await invalidate({ kind: "role", org, role: returned?.roleData?.role ?? body.roleName ?? body.role });
});
// ---------------------------------------------------------------------------

export const auth = betterAuth({
  appName: "authz-sidecar fixture",
  baseURL,
  secret,
  database: pool,
  // Requests without an Origin header and without cookies (server to server,
  // Authorization: Bearer) are not origin-checked; cookie requests must send
  // an Origin listed here. baseURL is always trusted.
  trustedOrigins: [baseURL, ...list("TRUSTED_ORIGINS")],
  // The end-to-end tests sign up and sign in many times per second.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  // Logs go to a file (scripts/betterauth.sh start); keep them free of ANSI codes.
  logger: { disableColors: true },
  emailAndPassword: { enabled: true, requireEmailVerification: false },
  // Plural table names: with a raw pg.Pool the only switch is modelName on
  // every model (usePlural belongs to adapter factories and would also turn
  // jwks into jwkss).
  user: { modelName: "users" },
  session: { modelName: "sessions" },
  account: { modelName: "accounts" },
  verification: { modelName: "verifications" },
  // invalidation: custom roles
  hooks: { after: invalidateRoleChanges },
  databaseHooks: {
    user: {
      // invalidation: bans, unbans, global role changes (the admin plugin
      // updates the users row) and deletions.
      update: {
        async after(user) {
          await invalidate({ kind: "user", user: user.id });
        },
      },
      delete: {
        async after(user) {
          await invalidate({ kind: "user", user: user.id });
        },
      },
      create: {
        // Lets a test or the demo name its global admin before sign-up,
        // since user ids are random.
        async before(user) {
          if (adminEmails.has(String(user.email).toLowerCase())) {
            return { data: { ...user, role: "admin" } };
          }
          return { data: user };
        },
      },
    },
  },
  plugins: [
    organization({
      teams: { enabled: true },
      ac,
      roles: { owner, admin: adminRole, member },
      dynamicAccessControl: { enabled: true },
      // invalidation: memberships and organizations.
      organizationHooks: {
        afterAddMember: ({ member }) => invalidate({ kind: "member", user: member.userId, org: member.organizationId }),
        afterAcceptInvitation: ({ member }) =>
          invalidate({ kind: "member", user: member.userId, org: member.organizationId }),
        afterUpdateMemberRole: ({ member }) =>
          invalidate({ kind: "member", user: member.userId, org: member.organizationId }),
        afterRemoveMember: ({ member }) =>
          invalidate({ kind: "member", user: member.userId, org: member.organizationId }),
        afterUpdateOrganization: ({ organization, member }) =>
          invalidate({
            kind: "org",
            org: organization?.id ?? member.organizationId,
            slugs: organization?.slug ? [organization.slug] : [],
          }),
        afterDeleteOrganization: ({ organization }) =>
          invalidate({ kind: "org", org: organization.id, slugs: [organization.slug] }),
      },
      schema: {
        organization: { modelName: "organizations" },
        member: { modelName: "members" },
        invitation: { modelName: "invitations" },
        team: { modelName: "teams" },
        teamMember: { modelName: "teamMembers" },
        organizationRole: { modelName: "organizationRoles" },
      },
    }),
    jwt({
      jwt: {
        // The sidecar authorizes per organization, so the token names the
        // session's active organization and the session it came from.
        definePayload: ({ user, session }) => ({
          ...user,
          activeOrganizationId: session.activeOrganizationId ?? null,
          sid: session.id,
        }),
        expirationTime: env("JWT_EXPIRATION", "15m"),
      },
      jwks: {
        rotationInterval: seconds("JWKS_ROTATION_INTERVAL"),
        gracePeriod: seconds("JWKS_GRACE_PERIOD"),
      },
      schema: { jwks: { modelName: "jwks" } },
    }),
    bearer(),
    admin({ adminUserIds: list("ADMIN_USER_IDS") }),
  ],
});

async function migrate(): Promise<void> {
  const started = performance.now();
  const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(auth.options);
  await runMigrations();
  const ms = Math.round(performance.now() - started);
  console.log(
    `migrated in ${ms} ms: created [${toBeCreated.map((t) => t.table).join(", ")}], ` +
      `altered [${toBeAdded.map((t) => t.table).join(", ")}]`,
  );
}

if (env("MIGRATE_ONLY") === "1") {
  await migrate();
  await pool.end();
  invalidationRedis?.close();
  process.exit(0);
}
if (env("MIGRATE") === "1") {
  await migrate();
}

const server = Bun.serve({
  port,
  hostname: host,
  async fetch(req: Request): Promise<Response> {
    const { pathname } = new URL(req.url);
    if (pathname === "/api/auth" || pathname.startsWith("/api/auth/")) {
      return auth.handler(req);
    }
    if (pathname === "/healthz") {
      // Healthy means the database answers too: tests wait on this before
      // signing users up.
      try {
        await pool.query("select 1");
        return new Response("ok\n");
      } catch (err) {
        return new Response(`database: ${(err as Error).message}\n`, { status: 503 });
      }
    }
    return new Response("not found\n", { status: 404 });
  },
});
console.log(`better-auth fixture listening on http://${host}:${server.port} (baseURL ${baseURL})`);

async function shutdown(signal: string): Promise<void> {
  console.log(`${signal}: shutting down`);
  await server.stop();
  await pool.end();
  invalidationRedis?.close();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
