package baclient

import (
	"context"
	"net/url"
	"time"
)

// The fixture's API-key configurations (@better-auth/api-key): keys owned
// by a user and keys owned by an organization.
const (
	UserKeys = "default" // references "user", prefix "usr_"
	OrgKeys  = "org"     // references "organization", prefix "org_"
)

// APIKey is an API key as Better Auth returns it (the apikey row; Key, the
// secret, only from create).
type APIKey struct {
	ID                  string              `json:"id"`
	ConfigID            string              `json:"configId"`
	Key                 string              `json:"key"`
	Name                *string             `json:"name"`
	Start               *string             `json:"start"`
	Prefix              *string             `json:"prefix"`
	ReferenceID         string              `json:"referenceId"`
	Enabled             bool                `json:"enabled"`
	ExpiresAt           *time.Time          `json:"expiresAt"`
	Remaining           *int                `json:"remaining"`
	RefillAmount        *int                `json:"refillAmount"`
	RefillInterval      *int                `json:"refillInterval"`
	RateLimitEnabled    bool                `json:"rateLimitEnabled"`
	RateLimitMax        *int                `json:"rateLimitMax"`
	RateLimitTimeWindow *int                `json:"rateLimitTimeWindow"`
	RequestCount        int                 `json:"requestCount"`
	LastRequest         *time.Time          `json:"lastRequest"`
	Permissions         map[string][]string `json:"permissions"`
	Metadata            map[string]any      `json:"metadata"`
}

// NewAPIKey says what key to create. Permissions, Remaining, Refill* and
// RateLimit* are server-only in Better Auth: over HTTP (CreateAPIKey) it
// refuses them with SERVER_ONLY_PROPERTY; CreateAPIKeyAsServer sets them.
type NewAPIKey struct {
	ConfigID       string              `json:"configId,omitempty"`       // UserKeys (default) or OrgKeys
	OrganizationID string              `json:"organizationId,omitempty"` // the owner, for OrgKeys
	Name           string              `json:"name,omitempty"`
	Prefix         string              `json:"prefix,omitempty"` // default: the configuration's
	ExpiresIn      *int                `json:"expiresIn,omitempty"`
	Metadata       map[string]any      `json:"metadata,omitempty"`
	Permissions    map[string][]string `json:"permissions,omitempty"`
	Remaining      *int                `json:"remaining,omitempty"`
	RefillAmount   *int                `json:"refillAmount,omitempty"`
	RefillInterval *int                `json:"refillInterval,omitempty"` // ms
	RateLimit
}

// RateLimit is a key's own rate limit (server-only fields).
type RateLimit struct {
	RateLimitEnabled    *bool `json:"rateLimitEnabled,omitempty"`
	RateLimitMax        *int  `json:"rateLimitMax,omitempty"`
	RateLimitTimeWindow *int  `json:"rateLimitTimeWindow,omitempty"` // ms
}

// Seconds is an ExpiresIn of d, whole seconds.
func Seconds(d time.Duration) *int {
	s := int(d / time.Second)
	return &s
}

// Ptr returns a pointer to v, for the optional fields.
func Ptr[T any](v T) *T { return &v }

// CreateAPIKey creates a key as the signed-in user (POST /api-key/create):
// owned by the user, or with ConfigID OrgKeys by OrganizationID (Better
// Auth then requires apiKey:create of the caller's organization role; the
// creator role, owner, has every permission).
func (c *Client) CreateAPIKey(ctx context.Context, s *Session, k NewAPIKey) (*APIKey, error) {
	var r APIKey
	if _, err := c.do(ctx, s, "POST", "/api-key/create", k, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateAPIKeyAsServer creates a key through Better Auth's server-side API
// (POST /test/api-key/create, TEST_ROUTES=1), where every field may be
// set: userID is the owner (UserKeys) or the acting member (OrgKeys).
func (c *Client) CreateAPIKeyAsServer(ctx context.Context, userID string, k NewAPIKey) (*APIKey, error) {
	var r APIKey
	if err := c.test(ctx, "POST", "/test/api-key/create", struct {
		NewAPIKey
		UserID string `json:"userId"`
	}{k, userID}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// APIKeyUpdate says what to change. Name, Enabled, ExpiresIn and Metadata
// may be set over HTTP; the others only server-side (UpdateAPIKeyAsServer).
type APIKeyUpdate struct {
	KeyID       string              `json:"keyId"`
	ConfigID    string              `json:"configId,omitempty"`
	Name        *string             `json:"name,omitempty"`
	Enabled     *bool               `json:"enabled,omitempty"`
	ExpiresIn   *int                `json:"expiresIn,omitempty"`
	Metadata    map[string]any      `json:"metadata,omitempty"`
	Permissions map[string][]string `json:"permissions,omitempty"`
	Remaining   *int                `json:"remaining,omitempty"`
	RateLimit
}

// UpdateAPIKey changes a key as the signed-in user (POST /api-key/update),
// e.g. Enabled false to disable it.
func (c *Client) UpdateAPIKey(ctx context.Context, s *Session, u APIKeyUpdate) (*APIKey, error) {
	var r APIKey
	if _, err := c.do(ctx, s, "POST", "/api-key/update", u, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// UpdateAPIKeyAsServer changes a key through Better Auth's server-side API
// (POST /test/api-key/update, TEST_ROUTES=1); userID is the owner or the
// acting member.
func (c *Client) UpdateAPIKeyAsServer(ctx context.Context, userID string, u APIKeyUpdate) (*APIKey, error) {
	var r APIKey
	if err := c.test(ctx, "POST", "/test/api-key/update", struct {
		APIKeyUpdate
		UserID string `json:"userId"`
	}{u, userID}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DeleteAPIKey deletes a key of the configuration configID (UserKeys or OrgKeys).
func (c *Client) DeleteAPIKey(ctx context.Context, s *Session, configID, keyID string) error {
	_, err := c.do(ctx, s, "POST", "/api-key/delete", map[string]string{"keyId": keyID, "configId": configID}, nil)
	return err
}

// ListAPIKeys lists the signed-in user's keys, or with orgID the
// organization's.
func (c *Client) ListAPIKeys(ctx context.Context, s *Session, orgID string) ([]APIKey, error) {
	path := "/api-key/list"
	if orgID != "" {
		path += "?organizationId=" + url.QueryEscape(orgID)
	}
	var r struct {
		APIKeys []APIKey `json:"apiKeys"`
	}
	_, err := c.do(ctx, s, "GET", path, nil, &r)
	return r.APIKeys, err
}

// APIKeyVerdict is Better Auth's verification of a key.
type APIKeyVerdict struct {
	Valid bool `json:"valid"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Key *APIKey `json:"key"`
}

// VerifyAPIKey asks Better Auth whether key is valid and, with
// permissions, grants them (auth.api.verifyApiKey through POST
// /test/api-key/verify, TEST_ROUTES=1: the endpoint has no HTTP route). Like
// any use of the key, it counts against the key's rate limit and remaining.
func (c *Client) VerifyAPIKey(ctx context.Context, key string, permissions map[string][]string) (*APIKeyVerdict, error) {
	var r APIKeyVerdict
	body := map[string]any{"key": key}
	if permissions != nil {
		body["permissions"] = permissions
	}
	if err := c.test(ctx, "POST", "/test/api-key/verify", body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
