package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/policytest"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

const explainUsage = `Usage: authz-sidecar explain [flags]

Explains one decision: the matched route and what it requires, the
credential and the caller, the organization and team and where they came
from, the roles and the tier they came from, what each role grants, and
the decision with its reason.

The caller, one of:
  (none)                 an anonymous request (public routes allow it; others answer 401)
  --token JWT            a JWT, verified like in production (keys from the policy's jwks_url)
  --cookie VALUE         the session cookie's value (needs the secret, as serve does)
  --session-token T      a bearer session token ("token.signature", or raw)
  --api-key KEY          an API key
  --user ID              a user trusted as given, with the credential of --credential
What the caller may do:
  with --token, --cookie, --session-token or --api-key: read from Better Auth's tables
    ($DATABASE_URL / --database-url, and Redis first if $REDIS_URL / --redis-url is set)
  with --user: --roles r1,r2 and the other subject flags below, offline; without any of
    them, the user's roles, standing and teams are read from the database

Examples:
  authz-sidecar explain --method POST --path /api/orgs/acme/leave/1/approve --user u1 --roles member
  authz-sidecar explain --path /api/admin/users --user u1 --platform-role admin
  authz-sidecar explain --method GET --path /api/orgs/acme/leave/1 --token "$JWT" --database-url "$DATABASE_URL"
  authz-sidecar explain --path /healthz

Flags:
`

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type explainOptions struct {
	policies, method, path, route                   string
	token, cookie, sessionToken, apiKey, user, cred string
	roles, platformRole, impersonatedBy, activeOrg  string
	activeTeam, teams, keyPerms, keyOrg             string
	emailVerified, anonymous, twoFactor, banned     bool
	database, redisURL, redisPrefix, secretFile     string
	redisMode, redisMasterName                      string
	sessionRedisURL, sessionRedisPrefix             string
	headers, custom                                 headerFlags
}

func explain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o explainOptions
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.StringVar(&o.policies, "policies", envOr(getenv, "AUTHZ_POLICIES", "./policies.yaml"), "policy file ($AUTHZ_POLICIES)")
	fs.StringVar(&o.method, "method", "GET", "request method")
	fs.StringVar(&o.path, "path", "", "request path (with query, as Envoy sends :path)")
	fs.StringVar(&o.route, "route", "", "policy route name, as Envoy's context_extensions route would select it")
	fs.Var(&o.headers, "H", "request header 'Name: value' (repeatable)")
	fs.StringVar(&o.token, "token", "", "JWT to verify")
	fs.StringVar(&o.cookie, "cookie", "", "value of Better Auth's session cookie")
	fs.StringVar(&o.sessionToken, "session-token", "", "bearer session token")
	fs.StringVar(&o.apiKey, "api-key", "", "API key")
	fs.StringVar(&o.user, "user", "", "user id to trust without a credential")
	fs.StringVar(&o.cred, "credential", "", "with --user: the credential kind to pretend: jwt, session or api_key (default: the policy's first)")
	fs.StringVar(&o.roles, "roles", "", "with --user: comma-separated roles in the organization (offline)")
	fs.Var(&o.custom, "custom-role", "with --roles: an organization-defined role, name=res:act,res:act (repeatable)")
	fs.StringVar(&o.platformRole, "platform-role", "", "with --user: the admin plugin's user.role")
	fs.StringVar(&o.teams, "teams", "", "with --user: comma-separated teams the user is in")
	fs.BoolVar(&o.emailVerified, "email-verified", false, "with --user: user.emailVerified")
	fs.BoolVar(&o.anonymous, "anonymous", false, "with --user: user.isAnonymous")
	fs.BoolVar(&o.twoFactor, "two-factor", false, "with --user: user.twoFactorEnabled")
	fs.BoolVar(&o.banned, "banned", false, "with --user: user.banned")
	fs.StringVar(&o.impersonatedBy, "impersonated-by", "", "with --user --credential session: the session's impersonatedBy")
	fs.StringVar(&o.activeOrg, "active-org", "", "with --user --credential session: the session's activeOrganizationId")
	fs.StringVar(&o.activeTeam, "active-team", "", "with --user --credential session: the session's activeTeamId")
	fs.StringVar(&o.keyPerms, "key-permissions", "", "with --user --credential api_key: the key's permissions, res:act,res:act")
	fs.StringVar(&o.keyOrg, "key-org", "", "with --user --credential api_key: make it this organization's key")
	fs.StringVar(&o.database, "database-url", getenv("DATABASE_URL"), "Better Auth's database ($DATABASE_URL)")
	fs.StringVar(&o.redisURL, "redis-url", getenv("REDIS_URL"), "Redis L2 tier ($REDIS_URL)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", envOr(getenv, "AUTHZ_REDIS_PREFIX", "authz:"), "Redis key prefix ($AUTHZ_REDIS_PREFIX)")
	fs.StringVar(&o.redisMode, "redis-mode", envOr(getenv, "AUTHZ_REDIS_MODE", "single"), "Redis topology: single, cluster or sentinel ($AUTHZ_REDIS_MODE)")
	fs.StringVar(&o.redisMasterName, "redis-master-name", getenv("AUTHZ_REDIS_MASTER_NAME"), "Sentinel master name ($AUTHZ_REDIS_MASTER_NAME)")
	fs.StringVar(&o.sessionRedisURL, "session-redis-url", getenv("AUTHZ_SESSION_REDIS_URL"), "Better Auth's secondaryStorage Redis, for session.storage: secondary ($AUTHZ_SESSION_REDIS_URL)")
	fs.StringVar(&o.sessionRedisPrefix, "session-redis-prefix", getenv("AUTHZ_SESSION_REDIS_PREFIX"), "the application's secondaryStorage key prefix ($AUTHZ_SESSION_REDIS_PREFIX)")
	fs.StringVar(&o.secretFile, "better-auth-secret-file", getenv("AUTHZ_BETTER_AUTH_SECRET_FILE"), "Better Auth's secret (default: $BETTER_AUTH_SECRETS, $BETTER_AUTH_SECRET)")
	if err := parseFlags(fs, args, explainUsage, stdout, stderr); err != nil {
		return err
	}
	credentials := 0
	for _, v := range []string{o.token, o.cookie, o.sessionToken, o.apiKey, o.user} {
		if v != "" {
			credentials++
		}
	}
	// A route chosen by name still has its path checked and read for its
	// {params}, as Envoy always sends one.
	if o.path == "" || credentials > 1 || fs.NArg() > 0 {
		return usageError(fs, explainUsage, stderr)
	}
	pol, err := policy.Load(o.policies)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	h := authz.HeaderMap{}
	for _, kv := range o.headers {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return fmt.Errorf("header %q: want 'Name: value'", kv)
		}
		h[strings.ToLower(textproto.TrimString(k))] = textproto.TrimString(v)
	}
	req := &authz.Request{Method: o.method, Path: o.path, Headers: h, RouteName: o.route}

	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var d authz.Decision
	rolesFrom := "" // the tier that answered
	switch {
	case o.user != "":
		if o.offline() {
			rolesFrom = "the command line"
		}
		d, err = explainTrusted(ctx, pol, req, o)
	case credentials == 0:
		d, err = policytest.Decide(ctx, pol, *req, nil, nil)
	default:
		d, err = explainOnline(ctx, pol, req, o, getenv)
	}
	if err != nil {
		return err
	}
	printTrace(stdout, pol, req, &d, rolesFrom)
	return nil
}

// offline reports whether the flags describe the user's facts (roles,
// standing, teams), so that none is read from the database.
func (o *explainOptions) offline() bool {
	return o.roles != "" || len(o.custom) > 0 || o.platformRole != "" || o.teams != "" ||
		o.emailVerified || o.anonymous || o.twoFactor || o.banned
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// explainTrusted decides for a user taken at its word (policytest's
// harness), offline with --roles, else with the user's facts read through
// the real tiers.
func explainTrusted(ctx context.Context, pol *policy.Policy, req *authz.Request, o explainOptions) (authz.Decision, error) {
	u := &policytest.User{
		ID: o.user, Roles: splitList(o.roles), PlatformRole: o.platformRole, Teams: splitList(o.teams),
		EmailVerified: o.emailVerified, Anonymous: o.anonymous, TwoFactor: o.twoFactor, Banned: o.banned,
		ImpersonatedBy: o.impersonatedBy, ActiveOrg: o.activeOrg, ActiveTeam: o.activeTeam,
		KeyPermissions: splitList(o.keyPerms), KeyOrg: o.keyOrg, CustomRoles: map[string][]string{},
	}
	switch o.cred {
	case "":
	case "jwt":
		u.Credential = policy.CredJWT
	case "session":
		u.Credential = policy.CredSession
	case "api_key":
		u.Credential = policy.CredAPIKey
	default:
		return authz.Decision{}, fmt.Errorf("--credential %q: want jwt, session or api_key", o.cred)
	}
	for _, c := range o.custom {
		name, perms, ok := strings.Cut(c, "=")
		if !ok {
			return authz.Decision{}, fmt.Errorf("--custom-role %q: want name=res:act,...", c)
		}
		u.CustomRoles[name] = splitList(perms)
	}
	if o.offline() {
		return policytest.Decide(ctx, pol, *req, u, nil)
	}
	t, closeTiers, err := explainTiers(ctx, pol, o)
	if err != nil {
		return authz.Decision{}, err
	}
	defer closeTiers()
	return policytest.Decide(ctx, pol, *req, u, t.access)
}

// explainOnline decides for a real credential exactly as serve would, with
// the same tiers.
func explainOnline(ctx context.Context, pol *policy.Policy, req *authz.Request, o explainOptions, getenv func(string) string) (authz.Decision, error) {
	h := req.Headers.(authz.HeaderMap)
	switch {
	case o.token != "":
		h["authorization"] = "Bearer " + o.token
	case o.sessionToken != "":
		h["authorization"] = "Bearer " + o.sessionToken
	case o.apiKey != "":
		h[pol.APIKeys.Header] = o.apiKey
	case o.cookie != "":
		// A browser stores and sends the value percent-encoded, as Better
		// Auth sets it; one copied from there must not be encoded twice.
		// A decoded value ("token.signature") has no "%" to undo.
		v := o.cookie
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
		h["cookie"] = pol.Session.CookieName + "=" + url.QueryEscape(v)
	}
	t, closeTiers, err := explainTiers(ctx, pol, o)
	if err != nil {
		return authz.Decision{}, err
	}
	defer closeTiers()
	states := stateBuilder{tokens: t.tokens}
	if pol.JWT.Enabled {
		keys, err := authn.NewKeySet(authn.KeySetConfig{URL: pol.JWT.JWKSURL}, zap.NewNop())
		if err != nil {
			return authz.Decision{}, err
		}
		// Only a JWT needs the keys: a cookie, session token or API key is
		// explained without Better Auth's JWKS being reachable.
		if o.token != "" || o.sessionToken == "" && h["authorization"] != "" {
			if err := keys.Refresh(ctx); err != nil {
				return authz.Decision{}, fmt.Errorf("fetch signing keys from %s: %w", pol.JWT.JWKSURL, err)
			}
		}
		states.keys = keys
	}
	st, err := states.state(pol)
	if err != nil {
		return authz.Decision{}, err
	}
	secret, err := sessionSecret(serveConfig{SecretFile: o.secretFile}, getenv)
	if err != nil {
		return authz.Decision{}, err
	}
	if secret.IsZero() && pol.Session.Enabled {
		if o.cookie != "" || o.sessionToken != "" {
			return authz.Decision{}, errors.New("a session credential is checked with Better Auth's secret: set $BETTER_AUTH_SECRET, $BETTER_AUTH_SECRETS or --better-auth-secret-file")
		}
		// No session credential to check: any secret lets the engine run.
		secret, _ = authn.NewSecret("explain: no session credential is checked")
	}
	e, err := authz.New(st, t.deps(), authz.Config{Secret: secret})
	if err != nil {
		return authz.Decision{}, err
	}
	return e.Decide(ctx, req), nil
}

// explainTiers opens the database (and Redis) and builds serve's tiers.
func explainTiers(ctx context.Context, pol *policy.Policy, o explainOptions) (*tiers, func(), error) {
	if o.database == "" {
		return nil, nil, errors.New("this needs Better Auth's tables: set --database-url or $DATABASE_URL (or give --roles to stay offline)")
	}
	db, err := pg.Open(ctx, o.database, pg.Config{MaxConns: 2, Schema: pol.Schema})
	if err != nil {
		return nil, nil, err
	}
	// The schema check also tells why a lookup would fail (a missing
	// table, a plugin that is off), before any decision is explained.
	f, err := db.Check(ctx)
	if err == nil {
		err = f.Supports(pol)
	}
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("database: %w", err)
	}
	c := serveConfig{
		DatabaseURL: o.database, RedisURL: o.redisURL, RedisPrefix: o.redisPrefix,
		RedisMode: o.redisMode, RedisMasterName: o.redisMasterName,
		SessionRedisURL: o.sessionRedisURL, SessionRedisPrefix: o.sessionRedisPrefix, SessionRedisMode: cache.RedisSingle,
		RedisTimeout: 200 * time.Millisecond, LoadTimeout: 10 * time.Second,
		L1TTL: time.Second, L1NegativeTTL: time.Second, L1MaxBytes: 1 << 20,
		L2TTL: 5 * time.Minute, L2NegativeTTL: 30 * time.Second,
		TokenCacheBytes: 1 << 20, TokenCacheTTL: time.Second,
	}
	t, err := newTiers(c, pol, db, nil, nil, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.close()
		db.Close()
		return nil, nil, err
	}
	return t, func() { t.close(); db.Close() }, nil
}

// printTrace writes the decision's trace. rolesFrom names where the roles
// came from when no tier answered (an offline explanation); "" prints the
// tier.
func printTrace(w io.Writer, pol *policy.Policy, req *authz.Request, d *authz.Decision, rolesFrom string) {
	p := func(k, format string, a ...any) { fmt.Fprintf(w, "%-12s %s\n", k+":", fmt.Sprintf(format, a...)) }
	p("request", "%s %s", req.Method, req.Path)
	p("policy", "version %s", pol.Version)
	rt, ok := pol.Route(d.Route)
	switch {
	case !ok:
		p("route", "(none)")
	case req.RouteName != "":
		p("route", "%s (selected by name; %s, line %d)", rt.Name, rt.Path, rt.Line)
	default:
		methods := ""
		if len(rt.Methods) > 0 {
			methods = strings.Join(rt.Methods, ",") + " "
		}
		p("route", "%s (%s%s, line %d)", rt.Name, methods, rt.Path, rt.Line)
	}
	if ok {
		p("requires", "%s", describeRequirements(rt))
	}
	if d.Credential != 0 {
		p("credential", "%s", d.Credential)
	}
	if d.UserID != "" {
		p("user", "%s", d.UserID)
	}
	if d.ImpersonatedBy != "" {
		p("impersonator", "%s", d.ImpersonatedBy)
	}
	if d.APIKeyID != "" {
		p("api key", "%s", d.APIKeyID)
	}
	if d.OrgSource.Kind != 0 {
		p("org", "%s (from %s)", orNone(d.OrgID), d.OrgSource)
	}
	if d.TeamID != "" {
		p("team", "%s", d.TeamID)
	}
	if d.Tier != roles.TierNone || len(d.Roles) > 0 {
		from := rolesFrom
		if from == "" {
			from = d.Tier.String()
		}
		p("roles", "[%s] (from %s)", strings.Join(d.Roles, ", "), from)
		for _, g := range d.Grants {
			p("  "+g.Role, "[%s]", strings.Join(g.Perms, ", "))
		}
	}
	verdict := "ALLOW"
	if !d.Allow {
		verdict = fmt.Sprintf("DENY %d", d.Code.HTTPStatus())
	} else if d.Shadowed {
		verdict = fmt.Sprintf("ALLOW (shadow mode; enforced it would be %d)", d.Code.HTTPStatus())
	}
	p("decision", "%s", verdict)
	p("reason", "%s: %s%s", d.Reason, orNone(d.Reason.Message()), prefixed(" (", d.Detail, ")"))
}

func describeRequirements(rt *policy.Route) string {
	if rt.Public {
		return "nothing (public)"
	}
	var parts []string
	if rt.Authenticated {
		parts = append(parts, "a valid credential")
	}
	if len(rt.Require) > 0 {
		parts = append(parts, "one role granting all of ["+strings.Join(rt.Require, ", ")+"]")
	}
	if len(rt.RequireAny) > 0 {
		parts = append(parts, "a role granting one of ["+strings.Join(rt.RequireAny, ", ")+"]")
	}
	if len(rt.RequirePlatform) > 0 {
		parts = append(parts, "one platform role granting all of ["+strings.Join(rt.RequirePlatform, ", ")+"]")
	}
	if len(rt.PlatformRoles) > 0 {
		parts = append(parts, "one of the platform roles ["+strings.Join(rt.PlatformRoles, ", ")+"]")
	}
	if rt.Team {
		parts = append(parts, "membership of the team")
	}
	if c := rt.Conditions; c.EmailVerified {
		parts = append(parts, "a verified email")
	}
	if rt.Conditions.NotAnonymous {
		parts = append(parts, "a non-anonymous user")
	}
	if rt.Conditions.TwoFactor {
		parts = append(parts, "two-factor enabled")
	}
	if rt.DenyImpersonation {
		parts = append(parts, "no impersonation")
	}
	if rt.Credentials != 0 {
		parts = append(parts, "credential "+rt.Credentials.String())
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func prefixed(p, s, suffix string) string {
	if s == "" {
		return ""
	}
	return p + s + suffix
}
