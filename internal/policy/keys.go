package policy

// Keys lists the keys each mapping of the file format may hold, by the
// mapping's name; any other key is an error. It is the loader's one list,
// and the test that keeps policies.schema.json in step with the loader
// reads it. Treat it as read-only.
var Keys = map[string][]string{
	"policy":     {"jwt", "session", "api_keys", "organization", "team", "app_roles", "statements", "roles", "admin", "schema", "routes", "default"},
	"jwt":        {"issuer", "audiences", "jwks_url", "algorithms", "leeway", "max_token_bytes", "session_claim"},
	"session":    {"cookie", "cookie_prefix", "secure_cookies", "bearer", "base_url", "trusted_origins", "storage"},
	"api_keys":   {"header", "owners", "counting"},
	"sources":    {"from"}, // organization and team
	"role":       {"inherits", "permissions"},
	"admin":      {"default_role", "admin_user_ids", "roles"},
	"schema":     {"naming", "tables", "fields"},
	"route":      {"name", "methods", "path", "public", "authenticated", "require", "require_any", "require_platform", "platform_roles", "team", "user", "impersonation", "credentials", "enforce"},
	"route.user": {"email_verified", "anonymous", "two_factor"},
}
