package policy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// BearerMode says which Authorization: Bearer values are read as a Better
// Auth session token (the bearer plugin).
type BearerMode uint8

// The bearer modes.
const (
	// BearerOff: Authorization: Bearer carries JWTs only.
	BearerOff BearerMode = iota
	// BearerSigned: "<token>.<signature>" (URL-encoded or not), as the
	// bearer plugin with requireSignature: true accepts.
	BearerSigned
	// BearerSignedOrRaw: also the raw token without a signature, as the
	// bearer plugin accepts by default (requireSignature: false).
	BearerSignedOrRaw
)

// String returns the mode as written in the file.
func (m BearerMode) String() string {
	switch m {
	case BearerSigned:
		return "signed"
	case BearerSignedOrRaw:
		return "signed_or_raw"
	}
	return "off"
}

// SessionStorage says where Better Auth keeps sessions.
type SessionStorage uint8

// The session storages.
const (
	// StorageDatabase: the session table (Better Auth's default).
	StorageDatabase SessionStorage = iota
	// StorageSecondary: Better Auth's secondaryStorage (Redis), keyed by
	// the token (the sidecar's --session-redis-url).
	StorageSecondary
)

// String returns the storage as written in the file.
func (s SessionStorage) String() string {
	if s == StorageSecondary {
		return "secondary"
	}
	return "database"
}

// Session is the session section: Better Auth sessions as credentials.
// The secret that verifies their signatures never comes from the policy
// (it comes from $BETTER_AUTH_SECRET / $BETTER_AUTH_SECRETS or a file).
type Session struct {
	// Enabled is true when the file has a session section.
	Enabled bool
	// Cookie: the session cookie is read.
	Cookie bool
	// CookieName is the session cookie's name: Better Auth's
	// "<advanced.cookiePrefix>.session_token", with "__Secure-" in front
	// when Secure is set.
	CookieName string
	// Secure: Better Auth names its cookies with the "__Secure-" prefix
	// (its baseURL is https, or advanced.useSecureCookies).
	Secure bool
	// Bearer says whether the bearer plugin's session token is read from
	// Authorization: Bearer.
	Bearer BearerMode
	// BaseURL is Better Auth's baseURL origin; always a trusted origin.
	BaseURL string
	// TrustedOrigins are Better Auth's trustedOrigins, as patterns (see
	// authn.OriginTrusted). Cookie-authenticated requests with an unsafe
	// method must come from BaseURL or one of them.
	TrustedOrigins []string
	// Storage says where sessions are read.
	Storage SessionStorage
}

// APIKeyOwner says what an API key's referenceId names.
type APIKeyOwner uint8

// The API key owners.
const (
	// OwnerUser: referenceId is a user id (the api-key plugin's default,
	// references: "user").
	OwnerUser APIKeyOwner = iota + 1
	// OwnerOrganization: referenceId is an organization id (references:
	// "organization"); the key acts for that organization only.
	OwnerOrganization
)

// String returns the owner as written in the file.
func (o APIKeyOwner) String() string {
	switch o {
	case OwnerUser:
		return "user"
	case OwnerOrganization:
		return "organization"
	}
	return fmt.Sprintf("APIKeyOwner(%d)", int(o))
}

// APIKeys is the api_keys section: Better Auth API keys as credentials.
type APIKeys struct {
	// Enabled is true when the file has an api_keys section.
	Enabled bool
	// Header is the lower-case header carrying the key (apiKeyHeaders).
	Header string
	// Owners maps a key's configId to what its referenceId names. A
	// configId not listed is refused.
	Owners map[string]APIKeyOwner
	// CountingInApp: keys whose configuration needs usage counting
	// (remaining, rate limits) are allowed, the application counting them
	// itself; when false they are refused (the sidecar never writes).
	CountingInApp bool
}

// Admin is the admin section: the admin plugin's platform roles.
type Admin struct {
	// DefaultRole applies to users whose role is empty (defaultRole).
	DefaultRole string
	// UserIDs pass every platform permission check (adminUserIds).
	UserIDs []string
}

// Schema is the schema section: how Better Auth's tables and columns are
// named in the database. Models and fields use Better Auth's logical names
// (user, session, member, ...; emailVerified, organizationId, ...).
type Schema struct {
	// Naming is "auto" (detect plural or singular names at startup),
	// "plural" (users, sessions, ...) or "singular" (Better Auth's default
	// install: user, session, ...).
	Naming string
	// Tables maps a model to its table name (Better Auth's modelName).
	Tables map[string]string
	// Fields maps a model to its renamed fields: logical name to column.
	Fields map[string]map[string]string
}

// Models are the Better Auth models the sidecar reads, with the fields it
// reads; the schema section may rename only these.
var Models = map[string][]string{
	"user":             {"id", "emailVerified", "role", "banned", "banExpires", "isAnonymous", "twoFactorEnabled"},
	"session":          {"id", "token", "userId", "expiresAt", "activeOrganizationId", "activeTeamId", "impersonatedBy"},
	"organization":     {"id", "slug"},
	"member":           {"id", "organizationId", "userId", "role", "createdAt"},
	"organizationRole": {"id", "organizationId", "role", "permission"},
	"team":             {"id", "organizationId"},
	"teamMember":       {"id", "teamId", "userId"},
	"apikey":           {"id", "configId", "referenceId", "key", "enabled", "expiresAt", "remaining", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "permissions"},
}

func modelNames() []string {
	names := make([]string, 0, len(Models))
	for m := range Models {
		names = append(names, m)
	}
	slices.Sort(names)
	return names
}

func (c *checker) session(n *yaml.Node, s *Session) {
	m, ok := c.mapping(n, "session", Keys["session"]...)
	if !ok {
		return
	}
	s.Enabled = true
	s.Cookie = true
	if v, ok := m["cookie"]; ok {
		s.Cookie, _ = c.boolean(v, "session.cookie")
	}
	prefix := DefaultCookiePrefix
	if v, ok := m["cookie_prefix"]; ok {
		if p, ok := c.str(v, "session.cookie_prefix"); ok {
			if !isToken(p) || strings.ContainsAny(p, "=;,") {
				c.add(v, "session.cookie_prefix %q is not a valid cookie name prefix", p)
			} else {
				prefix = p
			}
		}
	}
	if v, ok := m["secure_cookies"]; ok {
		s.Secure, _ = c.boolean(v, "session.secure_cookies")
	}
	if v, ok := m["bearer"]; ok {
		if b, ok := c.str(v, "session.bearer"); ok {
			switch b {
			case "off":
				s.Bearer = BearerOff
			case "signed":
				s.Bearer = BearerSigned
			case "signed_or_raw":
				s.Bearer = BearerSignedOrRaw
			default:
				c.add(v, "session.bearer must be off, signed (the bearer plugin with requireSignature: true) or signed_or_raw (its default), got %q", b)
			}
		}
	}
	if v, ok := m["base_url"]; ok {
		if u, ok := c.str(v, "session.base_url"); ok {
			if o, msg := originOf(u); msg != "" {
				c.add(v, "session.base_url %s", msg)
			} else {
				s.BaseURL = o
				if _, set := m["secure_cookies"]; !set {
					// Better Auth's rule when useSecureCookies is unset.
					s.Secure = strings.HasPrefix(o, "https://")
				}
			}
		}
	} else if s.Cookie {
		c.add(n, "session: missing required key %q (Better Auth's baseURL: always a trusted origin for cookie requests, and https there means __Secure- cookies)", "base_url")
	}
	if v, ok := m["trusted_origins"]; ok {
		vals, nodes := c.strList(v, "session.trusted_origins")
		for i, o := range vals {
			if msg := checkOriginPattern(o); msg != "" {
				c.add(nodes[i], "session.trusted_origins: %q %s", o, msg)
				continue
			}
			s.TrustedOrigins = append(s.TrustedOrigins, o)
		}
	}
	if v, ok := m["storage"]; ok {
		if st, ok := c.str(v, "session.storage"); ok {
			switch st {
			case "database":
				s.Storage = StorageDatabase
			case "secondary":
				s.Storage = StorageSecondary
			default:
				c.add(v, "session.storage must be database (the session table) or secondary (Better Auth's secondaryStorage in Redis), got %q", st)
			}
		}
	}
	s.CookieName = prefix + ".session_token"
	if s.Secure {
		s.CookieName = "__Secure-" + s.CookieName
	}
	if !s.Cookie && s.Bearer == BearerOff {
		c.add(n, "session: neither the cookie nor bearer session tokens are on; remove the section or turn one on")
	}
}

// originOf returns the origin of an absolute http(s) URL ("https://a.b:8443"),
// or what is wrong with it.
func originOf(s string) (string, string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", "is not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "must be an http:// or https:// URL"
	case u.Host == "":
		return "", "must name a host"
	case u.User != nil:
		return "", "must not contain credentials"
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), ""
}

// checkOriginPattern returns "" for a trusted-origin pattern Better Auth
// can match, or what is wrong with it. Patterns without wildcards are
// compared as exact strings with a request's origin (so a trailing "/" or
// an upper-case letter would never match, as in Better Auth).
func checkOriginPattern(p string) string {
	if strings.ContainsAny(p, "*?") {
		if strings.ContainsAny(p, " \t/") && !strings.Contains(p, "://") {
			return "is not a host pattern or an origin pattern"
		}
		return ""
	}
	o, msg := originOf(p)
	if msg != "" {
		return msg
	}
	if o != p {
		return fmt.Sprintf("never matches: Better Auth compares exact origins; write %q", o)
	}
	return ""
}

func (c *checker) apiKeys(n *yaml.Node, a *APIKeys) {
	m, ok := c.mapping(n, "api_keys", Keys["api_keys"]...)
	if !ok {
		return
	}
	a.Enabled = true
	a.Header = DefaultAPIKeyHeader
	if v, ok := m["header"]; ok {
		if h, ok := c.str(v, "api_keys.header"); ok {
			switch {
			case h != strings.ToLower(h):
				c.add(v, "api_keys.header %q must be lower case (Envoy passes headers lower-cased)", h)
			case !isToken(h):
				c.add(v, "api_keys.header %q is not a valid header name", h)
			case h == "authorization" || h == "cookie":
				c.add(v, "api_keys.header %q carries other credentials; the api-key plugin reads x-api-key by default", h)
			default:
				a.Header = h
			}
		}
	}
	a.Owners = map[string]APIKeyOwner{"default": OwnerUser}
	if v, ok := m["owners"]; ok {
		fs, ok := c.pairs(v, "api_keys.owners")
		if ok {
			a.Owners = make(map[string]APIKeyOwner, len(fs))
			for _, f := range fs {
				o, ok := c.str(f.val, "api_keys.owners."+f.key.Value)
				if !ok {
					continue
				}
				switch o {
				case "user":
					a.Owners[f.key.Value] = OwnerUser
				case "organization":
					a.Owners[f.key.Value] = OwnerOrganization
				default:
					c.add(f.val, "api_keys.owners.%s must be user or organization (the configuration's references), got %q", f.key.Value, o)
				}
			}
			if len(fs) == 0 {
				c.add(v, "api_keys.owners must list at least one configId")
			}
		}
	}
	if v, ok := m["counting"]; ok {
		if s, ok := c.str(v, "api_keys.counting"); ok {
			switch s {
			case "refuse":
			case "app":
				a.CountingInApp = true
			default:
				c.add(v, "api_keys.counting must be refuse (keys with remaining or rate limits are refused) or app (the application counts their use), got %q", s)
			}
		}
	}
}

func (c *checker) admin(n *yaml.Node, a *Admin) (rolesNode *yaml.Node) {
	a.DefaultRole = DefaultPlatformRole
	if n == nil {
		return nil
	}
	m, ok := c.mapping(n, "admin", Keys["admin"]...)
	if !ok {
		return nil
	}
	if v, ok := m["default_role"]; ok {
		if s, ok := c.str(v, "admin.default_role"); ok {
			a.DefaultRole = s
		}
	}
	if v, ok := m["admin_user_ids"]; ok {
		a.UserIDs, _ = c.strList(v, "admin.admin_user_ids")
	}
	return m["roles"]
}

func (c *checker) schema(n *yaml.Node, s *Schema) {
	s.Naming = "auto"
	if n == nil {
		return
	}
	m, ok := c.mapping(n, "schema", Keys["schema"]...)
	if !ok {
		return
	}
	if v, ok := m["naming"]; ok {
		if str, ok := c.str(v, "schema.naming"); ok {
			switch str {
			case "auto", "plural", "singular":
				s.Naming = str
			default:
				c.add(v, "schema.naming must be auto, plural (users, sessions, ...) or singular (Better Auth's default: user, session, ...), got %q", str)
			}
		}
	}
	known := modelNames()
	if v, ok := m["tables"]; ok {
		if fs, ok := c.pairs(v, "schema.tables"); ok {
			s.Tables = make(map[string]string, len(fs))
			for _, f := range fs {
				if _, ok := Models[f.key.Value]; !ok {
					c.add(f.key, "schema.tables: unknown model %q (known: %s)", f.key.Value, strings.Join(known, ", "))
					continue
				}
				if t, ok := c.str(f.val, "schema.tables."+f.key.Value); ok {
					if msg := checkIdentifier(t); msg != "" {
						c.add(f.val, "schema.tables.%s: %s", f.key.Value, msg)
						continue
					}
					s.Tables[f.key.Value] = t
				}
			}
		}
	}
	if v, ok := m["fields"]; ok {
		if fs, ok := c.pairs(v, "schema.fields"); ok {
			s.Fields = make(map[string]map[string]string, len(fs))
			for _, f := range fs {
				fields, ok := Models[f.key.Value]
				if !ok {
					c.add(f.key, "schema.fields: unknown model %q (known: %s)", f.key.Value, strings.Join(known, ", "))
					continue
				}
				inner, ok := c.pairs(f.val, "schema.fields."+f.key.Value)
				if !ok {
					continue
				}
				renames := make(map[string]string, len(inner))
				for _, g := range inner {
					if !slices.Contains(fields, g.key.Value) {
						c.add(g.key, "schema.fields.%s: unknown field %q (the sidecar reads: %s)", f.key.Value, g.key.Value, strings.Join(fields, ", "))
						continue
					}
					if col, ok := c.str(g.val, "schema.fields."+f.key.Value+"."+g.key.Value); ok {
						if msg := checkIdentifier(col); msg != "" {
							c.add(g.val, "schema.fields.%s.%s: %s", f.key.Value, g.key.Value, msg)
							continue
						}
						renames[g.key.Value] = col
					}
				}
				s.Fields[f.key.Value] = renames
			}
		}
	}
}

// checkIdentifier returns "" for a usable SQL table or column name (it is
// always double-quoted in SQL, but quotes, NULs and control bytes are
// refused outright), or what is wrong with it.
func checkIdentifier(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("%q is longer than PostgreSQL's 63-byte identifiers", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' {
			return fmt.Sprintf("%q holds a quote or a control character", s)
		}
	}
	return ""
}

// parseSource parses one entry of organization.from or team.from.
// sessionField is the only session field the list may name.
func parseSource(s, sessionField string) (Source, string) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return Source{}, fmt.Sprintf("%q must be path:<param>, header:<name>, claim:<name> or session:%s", s, sessionField)
	}
	switch kind {
	case "path":
		if !isParamName(name) {
			return Source{}, fmt.Sprintf("%q: a path parameter name is a letter or \"_\" followed by letters, digits or \"_\"", s)
		}
		return Source{Kind: FromPath, Name: name}, ""
	case "header":
		if name != strings.ToLower(name) {
			return Source{}, fmt.Sprintf("%q: header names must be lower case (Envoy passes them lower-cased)", s)
		}
		if !isToken(name) {
			return Source{}, fmt.Sprintf("%q: not a valid header name", s)
		}
		if strings.HasPrefix(name, "x-auth-") || strings.HasPrefix(name, "x-authz-") {
			// The sidecar's own answer headers: a request's copy is a
			// client's forgery, never a source.
			return Source{}, fmt.Sprintf("%q: x-auth-* and x-authz-* are the sidecar's own headers; a client's copy is never trusted", s)
		}
		return Source{Kind: FromHeader, Name: name}, ""
	case "claim":
		if !isClaimName(name) {
			return Source{}, fmt.Sprintf("%q: a claim name is non-empty printable ASCII without spaces", s)
		}
		return Source{Kind: FromClaim, Name: name}, ""
	case "session":
		if name != sessionField {
			return Source{}, fmt.Sprintf("%q: the session field here is %s", s, sessionField)
		}
		return Source{Kind: FromSession, Name: name}, ""
	}
	return Source{}, fmt.Sprintf("%q: unknown source kind %q (use path:, header:, claim: or session:)", s, kind)
}

// sources checks organization or team: a mapping with one key, from.
func (c *checker) sources(n *yaml.Node, what, sessionField string) ([]Source, bool) {
	m, ok := c.mapping(n, what, Keys["sources"]...)
	if !ok || !c.require(m, n, what, "from") {
		return nil, false
	}
	vals, nodes := c.strList(m["from"], what+".from")
	var out []Source
	for i, v := range vals {
		src, msg := parseSource(v, sessionField)
		if msg != "" {
			c.add(nodes[i], "%s.from: %s", what, msg)
			continue
		}
		out = append(out, src)
	}
	return out, len(out) > 0
}
