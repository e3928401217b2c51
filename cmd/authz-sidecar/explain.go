package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/cache"
	"github.com/authz-sidecar/authz-sidecar/internal/pg"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

const explainUsage = `Usage: authz-sidecar explain [flags]

Explains one decision: the matched route, the organization and where it
came from, the roles and the tier they came from, the permissions required
and held, and the decision with its reason.

Identity, one of:
  --token JWT            verified like in production (keys from the policy's jwks_url)
  --user ID              trusted as given (offline; no token)
Roles, one of:
  --roles r1,r2          as given (fully offline; --custom-role name=res:act,... for org-defined roles)
  (none)                 read from Better Auth's tables ($DATABASE_URL / --database-url,
                         and Redis first if $REDIS_URL / --redis-url is set)

Examples:
  authz-sidecar explain --method POST --path /api/orgs/acme/leave/1/approve --user u1 --roles member
  authz-sidecar explain --method GET --path /api/orgs/acme/leave/1 --token "$JWT" --database-url "$DATABASE_URL"

Flags:
`

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type explainOptions struct {
	policies, method, path, route, token, user, roles, database, redisURL, redisPrefix string
	headers, custom                                                                    headerFlags
}

func explain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o explainOptions
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), explainUsage); fs.PrintDefaults() }
	fs.StringVar(&o.policies, "policies", envOr(getenv, "AUTHZ_POLICIES", "./policies.yaml"), "policy file ($AUTHZ_POLICIES)")
	fs.StringVar(&o.method, "method", "GET", "request method")
	fs.StringVar(&o.path, "path", "", "request path (with query, as Envoy sends :path)")
	fs.StringVar(&o.route, "route", "", "policy route name, as Envoy's context_extensions route would select it")
	fs.Var(&o.headers, "H", "request header 'Name: value' (repeatable)")
	fs.StringVar(&o.token, "token", "", "bearer token (JWT) to verify")
	fs.StringVar(&o.user, "user", "", "user id to trust without a token")
	fs.StringVar(&o.roles, "roles", "", "comma-separated roles in the organization (offline; skips the database)")
	fs.Var(&o.custom, "custom-role", "org-defined role with --roles: name=res:act,res:act (repeatable)")
	fs.StringVar(&o.database, "database-url", getenv("DATABASE_URL"), "Better Auth's database ($DATABASE_URL)")
	fs.StringVar(&o.redisURL, "redis-url", getenv("REDIS_URL"), "Redis L2 tier ($REDIS_URL)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", envOr(getenv, "AUTHZ_REDIS_PREFIX", "authz:"), "Redis key prefix ($AUTHZ_REDIS_PREFIX)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if o.path == "" && o.route == "" || (o.token == "") == (o.user == "") || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	pol, err := policy.Load(o.policies)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	verifier, err := explainVerifier(ctx, pol, o)
	if err != nil {
		return err
	}
	resolver, closeResolver, err := explainResolver(ctx, o)
	if err != nil {
		return err
	}
	defer closeResolver()

	h := make(mapHeaders)
	for _, kv := range o.headers {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return fmt.Errorf("header %q: want 'Name: value'", kv)
		}
		h[strings.ToLower(textproto.TrimString(k))] = textproto.TrimString(v)
	}
	if o.token != "" {
		h["authorization"] = "Bearer " + o.token
	} else {
		h["authorization"] = "Bearer explain"
	}
	req := &authz.Request{Method: o.method, Path: o.path, Headers: h, RouteName: o.route}
	d := authz.New(pol, verifier, resolver, authz.Config{}).Decide(ctx, req)
	printTrace(stdout, pol, req, &d)
	return nil
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

type mapHeaders map[string]string

func (m mapHeaders) Get(k string) string { return m[k] }

// trustedUser is the --user "verifier": it vouches for one user id.
type trustedUser struct{ id *authn.Identity }

func (t trustedUser) Verify(context.Context, string) (*authn.Identity, error) { return t.id, nil }

func explainVerifier(ctx context.Context, pol *policy.Policy, o explainOptions) (authz.TokenVerifier, error) {
	if o.user != "" {
		return trustedUser{authn.NewIdentity(o.user, time.Now().Add(time.Hour), nil)}, nil
	}
	keys, err := authn.NewKeySet(authn.KeySetConfig{URL: pol.JWT.JWKSURL}, zap.NewNop())
	if err != nil {
		return nil, err
	}
	if err := keys.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("fetch signing keys from %s: %w", pol.JWT.JWKSURL, err)
	}
	return newVerifier(pol, keys)
}

// staticRoles is the --roles resolver: the given roles in whatever
// organization the request names.
type staticRoles struct {
	roles  []string
	custom map[string][]string
}

func (s staticRoles) Resolve(_ context.Context, q roles.Query) (*roles.Access, roles.Tier, error) {
	return roles.Compute(roles.Membership{UserID: q.UserID, UserFound: true, OrgID: q.OrgRef, Roles: s.roles, CustomRoles: s.custom}, q.Roles), roles.TierNone, nil
}

func explainResolver(ctx context.Context, o explainOptions) (roles.Resolver, func(), error) {
	if o.roles != "" {
		s := staticRoles{custom: map[string][]string{}}
		for _, r := range strings.Split(o.roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				s.roles = append(s.roles, r)
			}
		}
		for _, c := range o.custom {
			name, perms, ok := strings.Cut(c, "=")
			if !ok {
				return nil, nil, fmt.Errorf("--custom-role %q: want name=res:act,...", c)
			}
			s.custom[name] = strings.Split(perms, ",")
		}
		return s, func() {}, nil
	}
	if o.database == "" {
		return nil, nil, errors.New("without --roles, roles come from the database: set --database-url or $DATABASE_URL")
	}
	db, err := pg.Open(ctx, o.database, pg.Config{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	var r roles.Resolver = roles.NewSourceResolver(pg.NewMemberRepository(db))
	closers := []func(){db.Close}
	if o.redisURL != "" {
		rdb, err := newRedis(o.redisURL, 200*time.Millisecond)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		closers = append(closers, func() { rdb.Close() })
		// Through Redis like the sidecar (a miss fills it, as serve would).
		if r, err = cache.NewL2(r, rdb, cache.L2Config{Prefix: o.redisPrefix, Timeout: 200 * time.Millisecond}, zap.NewNop(), prometheus.NewRegistry()); err != nil {
			return nil, nil, err
		}
	}
	return r, func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

func printTrace(w io.Writer, pol *policy.Policy, req *authz.Request, d *authz.Decision) {
	p := func(k, format string, a ...any) { fmt.Fprintf(w, "%-12s %s\n", k+":", fmt.Sprintf(format, a...)) }
	p("request", "%s %s", req.Method, req.Path)
	p("policy", "version %s", pol.Version)
	switch rt, ok := pol.Route(d.Route); {
	case !ok:
		p("route", "(none)")
	case req.RouteName != "":
		p("route", "%s (selected by name; %s, line %d)", rt.Name, rt.Path, rt.Line)
	default:
		p("route", "%s (%s %s, line %d)", rt.Name, strings.Join(rt.Methods, ","), rt.Path, rt.Line)
	}
	if rt, ok := pol.Route(d.Route); ok {
		switch {
		case rt.Public:
			p("requires", "nothing (public)")
		case rt.Authenticated:
			p("requires", "a valid token")
		default:
			var parts []string
			if len(rt.Require) > 0 {
				parts = append(parts, "all of ["+strings.Join(rt.Require, ", ")+"]")
			}
			if len(rt.RequireAny) > 0 {
				parts = append(parts, "one of ["+strings.Join(rt.RequireAny, ", ")+"]")
			}
			p("requires", "%s", strings.Join(parts, " and "))
		}
	}
	if d.UserID != "" {
		p("user", "%s", d.UserID)
	}
	if d.OrgSource.Kind != 0 {
		p("org", "%s (from %s)", orNone(d.OrgID), d.OrgSource)
	}
	if d.Tier != roles.TierNone || len(d.Roles) > 0 {
		from := d.Tier.String()
		if d.Tier == roles.TierNone {
			from = "--roles"
		}
		p("roles", "[%s] (from %s)", strings.Join(d.Roles, ", "), from)
		p("holds", "[%s]", strings.Join(d.Permissions, ", "))
	}
	verdict := "ALLOW"
	if !d.Allow {
		verdict = fmt.Sprintf("DENY %d", d.Code.HTTPStatus())
	} else if d.Shadowed {
		verdict = fmt.Sprintf("ALLOW (shadow mode; enforced it would be %d)", d.Code.HTTPStatus())
	}
	p("decision", "%s", verdict)
	p("reason", "%s%s", d.Reason, prefixed(": ", d.Detail))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
