// Better Auth identity server used by the Go end-to-end tests and `make demo`.
//
// It is configured the way an application team would configure Better Auth
// 1.7.25 in front of the authz sidecar: email/password sign-in, organizations
// with teams and dynamic (per-organization) roles, the jwt plugin issuing
// tokens that carry the active organization and session id, the bearer plugin
// for server-to-server calls, the admin plugin for bans and impersonation,
// API keys owned by users or organizations, anonymous users and two-factor
// authentication. Environment variables switch the parts a sidecar test must
// see both ways (table names, optional plugins, secondary storage).
//
// Run with the Bun binary shipped by the npm package `bun`:
//
//   node_modules/.bin/bun server.ts
//
// Every environment variable is listed in README.md; all are optional except
// DATABASE_URL.
import { RedisClient } from "bun";
import { betterAuth, type BetterAuthPlugin, type SecondaryStorage } from "better-auth";
import { createAuthMiddleware, getSessionFromCtx, isAPIError } from "better-auth/api";
import { getMigrations } from "better-auth/db/migration";
import { admin, anonymous, bearer, jwt, organization, twoFactor } from "better-auth/plugins";
import { apiKey } from "@better-auth/api-key";
import { Pool } from "pg";
import { ac, roles } from "./access.ts";

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

// flag parses a switch that is "1" (on) or "0" (off).
function flag(name: string, fallback: boolean): boolean {
  const raw = env(name, fallback ? "1" : "0");
  if (raw !== "0" && raw !== "1") throw new Error(`${name} must be 0 or 1, got ${JSON.stringify(raw)}`);
  return raw === "1";
}

function oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env(name, fallback) as T;
  if (!allowed.includes(raw)) throw new Error(`${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
  return raw;
}

const port = Number(env("PORT", "3000"));
const host = env("HOST", "127.0.0.1");
const databaseURL = env("DATABASE_URL");
if (databaseURL === "") {
  console.error("DATABASE_URL is required (postgres://user@host:port/db)");
  process.exit(2);
}
// BETTER_AUTH_SECRETS ("1:new-secret,0:old-secret") is read by Better Auth
// itself; it then signs with the first and takes `secret` as the legacy one.
// The dev secret stands in only when neither variable is set.
const secrets = env("BETTER_AUTH_SECRETS");
const secret = env("BETTER_AUTH_SECRET", secrets === "" ? DEV_SECRET : "");
if (secrets === "" && secret.length < 32) {
  console.error("BETTER_AUTH_SECRET must be at least 32 characters");
  process.exit(2);
}
const baseURL = env("BETTER_AUTH_URL", `http://127.0.0.1:${port}`);
const adminEmails = new Set(list("ADMIN_EMAILS").map((e) => e.toLowerCase()));
const schemaMode = oneOf("SCHEMA", "plural", ["plural", "singular", "custom"] as const);
const teamsEnabled = flag("TEAMS", true);
const dynamicAC = flag("DYNAMIC_AC", true);
const adminPlugin = flag("ADMIN_PLUGIN", true);
const testRoutes = flag("TEST_ROUTES", false);
const jwtAlg = oneOf("JWT_ALG", "EdDSA", ["EdDSA", "ES256", "ES512"] as const);

// ---------------------------------------------------------------------------
// Table and column names. Better Auth has no global switch when `database` is
// a raw pg.Pool (usePlural belongs to adapter factories and would also turn
// jwks into jwkss): an app renames with modelName (tables) and fields
// (columns) on every model. SCHEMA=singular passes neither (Better Auth's
// default install).
type Model =
  | "user" | "session" | "account" | "verification" | "organization" | "member" | "invitation"
  | "team" | "teamMember" | "organizationRole" | "jwks" | "apikey" | "twoFactor";

const TABLES: Record<typeof schemaMode, Partial<Record<Model, string>>> = {
  plural: {
    user: "users", session: "sessions", account: "accounts", verification: "verifications",
    organization: "organizations", member: "members", invitation: "invitations", team: "teams",
    teamMember: "teamMembers", organizationRole: "organizationRoles", jwks: "jwks", apikey: "apikeys",
    twoFactor: "twoFactors",
  },
  singular: {},
  custom: {
    user: "auth_users", session: "auth_sessions", account: "auth_accounts", verification: "auth_verifications",
    organization: "auth_organizations", member: "auth_members", invitation: "auth_invitations",
    team: "auth_teams", teamMember: "auth_team_members", organizationRole: "auth_org_roles",
    jwks: "auth_jwks", apikey: "auth_apikeys", twoFactor: "auth_two_factors",
  },
};
const FIELDS: Record<typeof schemaMode, Partial<Record<Model, Record<string, string>>>> = {
  plural: {},
  singular: {},
  custom: {
    user: { emailVerified: "email_verified" },
    session: { userId: "user_id" },
    member: { role: "member_role", userId: "user_id" },
    organizationRole: { role: "role_name" },
    apikey: { referenceId: "owner_id" },
  },
};

// The organization plugin adds activeOrganizationId (and activeTeamId) to the
// session; it renames them itself, through its own schema.session.fields.
const ORG_SESSION_FIELDS: Record<typeof schemaMode, Record<string, string> | undefined> = {
  plural: undefined,
  singular: undefined,
  custom: { activeOrganizationId: "active_organization_id" },
};

// names is the { modelName, fields } of one model in this mode, without the
// keys this mode leaves to Better Auth.
function names(model: Model): { modelName?: string; fields?: Record<string, string> } {
  const modelName = TABLES[schemaMode][model];
  const fields = FIELDS[schemaMode][model];
  return { ...(modelName ? { modelName } : {}), ...(fields ? { fields } : {}) };
}

const pool = new Pool({ connectionString: databaseURL });

// ---------------------------------------------------------------------------
// Secondary storage (SECONDARY_STORAGE_REDIS_URL): Better Auth then keeps
// sessions only in Redis (storeSessionInDatabase stays at its default,
// false), and verification values too. The key layout is in README.md.
const secondaryRedisURL = env("SECONDARY_STORAGE_REDIS_URL");
const secondaryPrefix = env("SECONDARY_STORAGE_PREFIX");
const secondaryRedis = secondaryRedisURL === "" ? null : new RedisClient(secondaryRedisURL);

// INCR, and the TTL (seconds) only when the key is new (SecondaryStorage.increment).
const INCR_SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 and tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n`;

function redisSecondaryStorage(redis: RedisClient): SecondaryStorage {
  const k = (key: string) => secondaryPrefix + key;
  return {
    get: (key) => redis.get(k(key)),
    getAndDelete: (key) => redis.send("GETDEL", [k(key)]),
    increment: async (key, ttl) => Number(await redis.send("EVAL", [INCR_SCRIPT, "1", k(key), String(Math.ceil(ttl))])),
    async set(key, value, ttl) {
      if (ttl !== undefined && ttl > 0) await redis.send("SET", [k(key), value, "EX", String(Math.ceil(ttl))]);
      else await redis.set(k(key), value);
      await invalidateSecondaryStorageSet(key); // invalidation
    },
    async delete(key) {
      const old = await redis.send("GETDEL", [k(key)]);
      await invalidateSecondaryStorageDelete(old); // invalidation
    },
  };
}

// ---------------------------------------------------------------------------
// Cache invalidation for the authz sidecar (docs/consistency.md). Copy this
// section and the hooks marked "invalidation" below into an application to
// make a revoked role, a removed member, a signed-out session or a deleted API
// key take effect on every sidecar replica within milliseconds instead of
// after the cache TTLs.
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
  | { kind: "session"; user: string; session: string }
  | { kind: "apikey"; apikey: string }
  | { kind: "org"; org: string; slugs?: string[] }
  | { kind: "role"; org: string; role?: string };

function markerKeys(change: Invalidation): string[] {
  switch (change.kind) {
    case "member":
    case "user":
      return [`${invalidationPrefix}inv:u:${change.user}`];
    case "session":
      return [`${invalidationPrefix}inv:s:${change.session}`];
    case "apikey":
      return [`${invalidationPrefix}inv:k:${change.apikey}`];
    case "org":
      return [change.org, ...(change.slugs ?? [])].map((ref) => `${invalidationPrefix}inv:o:${ref}`);
    case "role":
      return [`${invalidationPrefix}inv:o:${change.org}`];
  }
}

async function invalidate(change: Invalidation): Promise<void> {
  if (invalidationRedis === null) return;
  const message = { v: 1, id: crypto.randomUUID(), ...change, src: "better-auth", at: Date.now() };
  const now = (BigInt(Date.now()) * 1_000_000n).toString();
  try {
    for (const key of markerKeys(change)) {
      await invalidationRedis.send("EVAL", [MARK_SCRIPT, "1", key, now, String(invalidationMarkerTTL)]);
    }
    await invalidationRedis.publish(invalidationChannel, JSON.stringify(message));
  } catch (err) {
    console.error(`authz invalidation ${JSON.stringify(message)} not published: ${(err as Error).message}`);
  }
}

// Sessions: a session row's update (set-active organization or team, the daily
// expiry refresh) and delete fire databaseHooks.session, one call per row even
// for bulk deletions (revoke-sessions, ban, user deletion). Sessions kept only
// in secondary storage fire update but never delete. Those deletions are
// caught in the storage itself rather than after a list of endpoints: a dozen
// endpoints delete sessions (sign-out, revocations, ban, user deletion,
// impersonation, two-factor, anonymous linking, expiry), and only the storage
// sees them all, with the session's id. Better Auth revokes all of a user's
// sessions there by writing "revoked-sessions-before-<userId>" (every session
// of the user created earlier counts as revoked), announced as a `user`
// message, then deleting each listed session.
const sessionHook = {
  async after(session: { id: string; userId: string } | null) {
    if (session?.id && session.userId) await invalidate({ kind: "session", user: session.userId, session: session.id });
  },
};

async function invalidateSecondaryStorageDelete(old: unknown): Promise<void> {
  if (typeof old !== "string" || !old.startsWith("{")) return;
  let value: { session?: { id?: unknown; userId?: unknown } } | null = null;
  try {
    value = JSON.parse(old);
  } catch {
    return;
  }
  const s = value?.session;
  if (typeof s?.id === "string" && typeof s.userId === "string") {
    await invalidate({ kind: "session", user: s.userId, session: s.id });
  }
}

async function invalidateSecondaryStorageSet(key: string): Promise<void> {
  const REVOKED = "revoked-sessions-before-";
  if (key.startsWith(REVOKED)) await invalidate({ kind: "user", user: key.slice(REVOKED.length) });
}

// Custom roles, API keys and leaving an organization have no hooks: they are
// caught after their endpoints. A custom role change invalidates the whole
// organization; an API key change the key.
const ROLE_PATHS = new Set(["/organization/create-role", "/organization/update-role", "/organization/delete-role"]);
const APIKEY_PATHS = new Set(["/api-key/update", "/api-key/delete"]);
const invalidateAfterEndpoints = createAuthMiddleware(async (ctx) => {
  if (isAPIError(ctx.context.returned)) return;
  if (ROLE_PATHS.has(ctx.path)) {
    const body = (ctx.body ?? {}) as { organizationId?: string; role?: string; roleName?: string };
    const returned = ctx.context.returned as { roleData?: { organizationId?: string; role?: string } } | undefined;
    const org =
      body.organizationId ??
      returned?.roleData?.organizationId ??
      (await getSessionFromCtx(ctx))?.session.activeOrganizationId ??
      undefined;
    if (!org) return;
    await invalidate({ kind: "role", org, role: returned?.roleData?.role ?? body.roleName ?? body.role });
  } else if (APIKEY_PATHS.has(ctx.path)) {
    const keyId = (ctx.body as { keyId?: string } | undefined)?.keyId;
    if (keyId) await invalidate({ kind: "apikey", apikey: keyId });
  } else if (ctx.path === "/organization/leave") {
    // Leaving deletes the member row without organizationHooks.afterRemoveMember.
    const member = ctx.context.returned as { userId?: string; organizationId?: string } | undefined;
    if (member?.userId && member.organizationId) {
      await invalidate({ kind: "member", user: member.userId, org: member.organizationId });
    }
  }
});

// Deleting a team deletes its "teamMembers" rows; afterDeleteTeam no longer
// sees them, so beforeDeleteTeam notes who they were.
const teamMembersBeingDeleted = new Map<string, string[]>();
// ---------------------------------------------------------------------------

// Test-only: what emailVerification.sendVerificationEmail was asked to send,
// by lowercased email (GET /test/verification-email).
const verificationEmails = new Map<string, { url: string; token: string }>();

const secondaryStorage = secondaryRedis === null ? undefined : redisSecondaryStorage(secondaryRedis);

const plugins: BetterAuthPlugin[] = [
  organization({
    teams: { enabled: teamsEnabled },
    ac,
    roles,
    dynamicAccessControl: { enabled: dynamicAC },
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
      afterAddTeamMember: ({ teamMember, team }) =>
        invalidate({ kind: "member", user: teamMember.userId, org: team.organizationId }),
      afterRemoveTeamMember: ({ teamMember, team }) =>
        invalidate({ kind: "member", user: teamMember.userId, org: team.organizationId }),
      async beforeDeleteTeam({ team }) {
        const ctx = await auth.$context;
        const rows = await ctx.adapter.findMany<{ userId: string }>({
          model: "teamMember",
          where: [{ field: "teamId", value: team.id }],
        });
        teamMembersBeingDeleted.set(team.id, rows.map((r) => r.userId));
      },
      async afterDeleteTeam({ team }) {
        const users = teamMembersBeingDeleted.get(team.id) ?? [];
        teamMembersBeingDeleted.delete(team.id);
        for (const user of users) await invalidate({ kind: "member", user, org: team.organizationId });
      },
    },
    schema: {
      organization: names("organization"),
      member: names("member"),
      invitation: names("invitation"),
      ...(teamsEnabled ? { team: names("team"), teamMember: names("teamMember") } : {}),
      ...(dynamicAC ? { organizationRole: names("organizationRole") } : {}),
      ...(ORG_SESSION_FIELDS[schemaMode] ? { session: { fields: ORG_SESSION_FIELDS[schemaMode] } } : {}),
    },
  }),
  // JWT_PLUGIN=0: no jwt plugin at all (an app protected by cookie sessions
  // alone; make demo).
  ...(flag("JWT_PLUGIN", true) ? [jwt({
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
      keyPairConfig: jwtAlg === "EdDSA" ? { alg: "EdDSA", crv: "Ed25519" } : { alg: jwtAlg },
      rotationInterval: seconds("JWKS_ROTATION_INTERVAL"),
      gracePeriod: seconds("JWKS_GRACE_PERIOD"),
    },
    schema: { jwks: names("jwks") },
  })] : []),
  bearer({ requireSignature: flag("BEARER_REQUIRE_SIGNATURE", false) }),
  ...(adminPlugin ? [admin({ adminUserIds: list("ADMIN_USER_IDS") })] : []),
  // Two configurations: keys owned by a user (configId "default", prefix
  // "usr_") and keys owned by an organization ("org", prefix "org_"). Both
  // are read from the x-api-key header by Better Auth and carry permissions
  // (set server-side only). minExpiresIn 0 lets tests create keys that expire
  // in seconds (Better Auth's default minimum is one day).
  apiKey(
    [
      {
        configId: "default",
        references: "user",
        defaultPrefix: "usr_",
        enableMetadata: true,
        keyExpiration: { minExpiresIn: 0 },
        rateLimit: { enabled: flag("APIKEY_RATE_LIMIT", true) },
      },
      {
        configId: "org",
        references: "organization",
        defaultPrefix: "org_",
        enableMetadata: true,
        keyExpiration: { minExpiresIn: 0 },
        rateLimit: { enabled: flag("APIKEY_RATE_LIMIT", true) },
      },
    ],
    { schema: { apikey: names("apikey") } },
  ),
  anonymous(),
  twoFactor({ schema: { twoFactor: names("twoFactor") } }),
];

export const auth = betterAuth({
  appName: "authz-sidecar fixture",
  baseURL,
  ...(secret !== "" ? { secret } : {}),
  database: pool,
  secondaryStorage,
  // Requests without an Origin header and without cookies (server to server,
  // Authorization: Bearer) are not origin-checked; cookie requests must send
  // an Origin listed here. baseURL is always trusted.
  trustedOrigins: [baseURL, ...list("TRUSTED_ORIGINS")],
  // The end-to-end tests sign up and sign in many times per second.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  // Logs go to a file (scripts/betterauth.sh start); keep them free of ANSI codes.
  logger: { disableColors: true },
  advanced: env("COOKIE_PREFIX") === "" ? {} : { cookiePrefix: env("COOKIE_PREFIX") },
  emailAndPassword: { enabled: true, requireEmailVerification: false },
  emailVerification: {
    // No mail server: remember the link for GET /test/verification-email.
    async sendVerificationEmail({ user, url, token }) {
      verificationEmails.set(user.email.toLowerCase(), { url, token });
    },
  },
  user: { ...names("user"), deleteUser: { enabled: true } },
  session: {
    ...names("session"),
    // SESSION_EXPIRES_IN (seconds) shortens sessions, for expiry tests.
    ...(seconds("SESSION_EXPIRES_IN") !== undefined
      ? { expiresIn: seconds("SESSION_EXPIRES_IN"), updateAge: seconds("SESSION_EXPIRES_IN") }
      : {}),
  },
  account: names("account"),
  verification: names("verification"),
  // invalidation: custom roles, API keys, leaving an organization
  hooks: { after: invalidateAfterEndpoints },
  databaseHooks: {
    // invalidation: set-active, sign-out, revocations (see sessionHook)
    session: { update: sessionHook, delete: sessionHook },
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
          if (adminPlugin && adminEmails.has(String(user.email).toLowerCase())) {
            return { data: { ...user, role: "admin" } };
          }
          return { data: user };
        },
      },
    },
  },
  plugins,
});

// ---------------------------------------------------------------------------
// Test-only routes (TEST_ROUTES=1), outside /api/auth, for what Better Auth
// offers only server-side (auth.api without a request). They run Better
// Auth's own server-side endpoints, hooks included; nothing else writes.
// Never expose them in an application: they act for any user.
async function testRoute(req: Request, pathname: string): Promise<Response> {
  const body = req.method === "POST" ? await req.json().catch(() => ({})) : {};
  const run = async (call: () => Promise<unknown>) => {
    try {
      return Response.json(await call());
    } catch (err) {
      if (isAPIError(err)) return Response.json(err.body ?? { message: err.message }, { status: err.statusCode });
      return Response.json({ message: (err as Error).message }, { status: 500 });
    }
  };
  switch (`${req.method} ${pathname}`) {
    // Creates an API key with server-only fields (permissions, remaining,
    // refill, rate limit): body = /api-key/create's plus userId, the owner
    // (configId "default") or the acting member (configId "org", with organizationId).
    case "POST /test/api-key/create":
      return run(() => auth.api.createApiKey({ body }));
    // Updates server-only fields (permissions, remaining, rate limit): body =
    // /api-key/update's plus userId (the owner or the acting member).
    case "POST /test/api-key/update":
      return run(() => auth.api.updateApiKey({ body }));
    // Better Auth's own verdict on a key: {valid, error, key}; body = {key, permissions?, configId?}.
    case "POST /test/api-key/verify":
      return run(() => auth.api.verifyApiKey({ body }));
    // The last verification link sent to ?email=: {url, token}, 404 if none.
    case "GET /test/verification-email": {
      const email = (new URL(req.url).searchParams.get("email") ?? "").toLowerCase();
      const sent = verificationEmails.get(email);
      return sent ? Response.json(sent) : Response.json({ message: "no verification email" }, { status: 404 });
    }
  }
  return new Response("not found\n", { status: 404 });
}
// ---------------------------------------------------------------------------

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

function closeClients(): void {
  invalidationRedis?.close();
  secondaryRedis?.close();
}

if (env("MIGRATE_ONLY") === "1") {
  await migrate();
  await pool.end();
  closeClients();
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
    if (testRoutes && pathname.startsWith("/test/")) {
      return testRoute(req, pathname);
    }
    if (pathname === "/healthz") {
      // Healthy means the database (and the secondary storage, if any)
      // answers too: tests wait on this before signing users up.
      try {
        await pool.query("select 1");
        await secondaryRedis?.send("PING", []);
        return new Response("ok\n");
      } catch (err) {
        return new Response(`unhealthy: ${(err as Error).message}\n`, { status: 503 });
      }
    }
    return new Response("not found\n", { status: 404 });
  },
});
console.log(
  `better-auth fixture listening on http://${host}:${server.port} (baseURL ${baseURL}, SCHEMA=${schemaMode}` +
    `${secondaryStorage ? ", secondary storage" : ""}${testRoutes ? ", test routes" : ""})`,
);

async function shutdown(signal: string): Promise<void> {
  console.log(`${signal}: shutting down`);
  await server.stop();
  await pool.end();
  closeClients();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
