// Package baclient is a small client of Better Auth's HTTP API (1.7.25, as
// the fixture app in test/betterauth configures it: the organization, jwt,
// bearer, admin, api-key, anonymous and two-factor plugins), used by the
// end-to-end, differential and load tests and the demo to drive a real
// Better Auth exactly as an application would. Every write to Better Auth
// goes through here; the sidecar itself never writes.
//
// Each method is one call (or a short, documented sequence of calls) of
// Better Auth's own endpoints. The few methods named ...AsServer, and
// VerifyEmail and VerifyAPIKey, also use the fixture's test-only routes
// (TEST_ROUTES=1), which run Better Auth's server-side API for what it
// offers no HTTP route for.
package baclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Better Auth server.
type Client struct {
	// BaseURL is Better Auth's base URL, e.g. http://127.0.0.1:3000.
	BaseURL string
	// Origin is the Origin header of cookie requests, which Better Auth
	// checks against its trusted origins; empty: BaseURL (always trusted).
	Origin string
	HTTP   *http.Client
}

// New returns a client of the Better Auth server at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 15 * time.Second}}
}

// Session is a signed-in user, as Better Auth handed it out.
type Session struct {
	// Token is the bearer plugin's signed session token, the set-auth-token
	// header: "<sessions.token>.<base64 HMAC>".
	Token string
	// Cookie is the session cookie exactly as Set-Cookie gave it (name
	// "<prefix>.session_token", value URL-encoded "<token>.<signature>").
	Cookie *http.Cookie
	// Cookies are all the cookies Better Auth set with the session (the
	// admin plugin's admin_session during an impersonation, ...).
	Cookies []*http.Cookie
	UserID  string
	Email   string

	viaCookie bool
}

// RawToken is the session token as stored (sessions.token, the Redis key
// with secondary storage): Token without its signature.
func (s *Session) RawToken() string {
	raw, _, _ := strings.Cut(s.Token, ".")
	return raw
}

// ViaCookie returns a copy of s whose calls present the session cookies
// (with an Origin header) instead of Authorization: Bearer.
func (s *Session) ViaCookie() *Session {
	c := *s
	c.viaCookie = true
	return &c
}

// Error is a non-2xx answer from Better Auth.
type Error struct {
	Method, Path string
	Status       int
	// Code and Message are Better Auth's error body fields, when present.
	Code, Message string
	Body          string
}

func (e *Error) Error() string {
	return fmt.Sprintf("better auth %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// ErrTwoFactorRequired is returned by SignIn for a user with two-factor
// authentication enabled: Better Auth answers {"twoFactorRedirect": true}
// and no session (use SignInTOTP).
var ErrTwoFactorRequired = errors.New("better auth: sign-in needs a second factor")

// call is one HTTP request.
type call struct {
	method, path string // path under BaseURL, e.g. /api/auth/sign-in/email
	session      *Session
	cookies      []*http.Cookie // sent as they are, with an Origin header
	in           any
}

// response is what a call returned.
type response struct {
	header  http.Header
	cookies []*http.Cookie
	body    []byte
}

func (c *Client) send(ctx context.Context, k call) (*response, error) {
	var body io.Reader
	if k.in != nil {
		b, err := json.Marshal(k.in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.BaseURL+k.path, body)
	if err != nil {
		return nil, err
	}
	if k.in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cookies := k.cookies
	if s := k.session; s != nil {
		if s.viaCookie {
			cookies = append(cookies, s.Cookies...)
		} else {
			// Bearer requests without cookies skip the Origin check.
			req.Header.Set("Authorization", "Bearer "+s.Token)
		}
	}
	if len(cookies) > 0 {
		var parts []string
		for _, ck := range cookies {
			parts = append(parts, ck.Name+"="+ck.Value) // the value as Set-Cookie gave it
		}
		req.Header.Set("Cookie", strings.Join(parts, "; "))
		origin := c.Origin
		if origin == "" {
			origin = c.BaseURL
		}
		req.Header.Set("Origin", origin)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("better auth %s %s: %w", k.method, k.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("better auth %s %s: read body: %w", k.method, k.path, err)
	}
	r := &response{header: resp.Header, cookies: resp.Cookies(), body: b}
	if resp.StatusCode/100 != 2 {
		e := &Error{Method: k.method, Path: k.path, Status: resp.StatusCode, Body: string(b)}
		var eb struct{ Code, Message string }
		if json.Unmarshal(b, &eb) == nil {
			e.Code, e.Message = eb.Code, eb.Message
		}
		return r, e
	}
	return r, nil
}

// do calls Better Auth's endpoint path (under /api/auth) as s (nil: no
// session) and decodes the JSON answer into out (nil: ignore it).
func (c *Client) do(ctx context.Context, s *Session, method, path string, in, out any) (*response, error) {
	r, err := c.send(ctx, call{method: method, path: "/api/auth" + path, session: s, in: in})
	if err != nil {
		return r, err
	}
	return r, decode(method, path, r.body, out)
}

// test calls one of the fixture's test-only routes (TEST_ROUTES=1).
func (c *Client) test(ctx context.Context, method, path string, in, out any) error {
	r, err := c.send(ctx, call{method: method, path: path, in: in})
	if err != nil {
		return err
	}
	return decode(method, path, r.body, out)
}

func decode(method, path string, b []byte, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("better auth %s %s: decode %q: %w", method, path, b, err)
	}
	return nil
}

type authResponse struct {
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
	TwoFactorRedirect bool `json:"twoFactorRedirect"`
}

// newSession builds the session a sign-in style answer set: the bearer
// plugin's set-auth-token header and the Set-Cookie headers.
func newSession(r *response, a authResponse, path string) (*Session, error) {
	if a.TwoFactorRedirect {
		return nil, ErrTwoFactorRequired
	}
	s := &Session{Token: r.header.Get("set-auth-token"), UserID: a.User.ID, Email: a.User.Email}
	if s.Token == "" {
		return nil, fmt.Errorf("better auth %s: no set-auth-token header (is the bearer plugin on?)", path)
	}
	s.Cookies = liveCookies(r.cookies)
	for _, ck := range s.Cookies {
		if strings.HasSuffix(ck.Name, ".session_token") {
			s.Cookie = ck
		}
	}
	if s.Cookie == nil {
		return nil, fmt.Errorf("better auth %s: no session cookie in Set-Cookie", path)
	}
	return s, nil
}

// liveCookies drops the cookies a response deleted (Max-Age=0 or empty)
// and keeps the last of each name.
func liveCookies(cookies []*http.Cookie) []*http.Cookie {
	var out []*http.Cookie
	for _, ck := range cookies {
		for i := 0; i < len(out); i++ {
			if out[i].Name == ck.Name {
				out = append(out[:i], out[i+1:]...)
				i--
			}
		}
		if ck.Value != "" && ck.MaxAge >= 0 {
			out = append(out, ck)
		}
	}
	return out
}

// SignUp creates a user with email and password and returns its session.
func (c *Client) SignUp(ctx context.Context, email, password, name string) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, nil, "POST", "/sign-up/email", map[string]string{"email": email, "password": password, "name": name}, &a)
	if err != nil {
		return nil, err
	}
	return newSession(r, a, "/sign-up/email")
}

// SignIn starts a new session for an existing user. It returns
// ErrTwoFactorRequired for a user with two-factor authentication enabled.
func (c *Client) SignIn(ctx context.Context, email, password string) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, nil, "POST", "/sign-in/email", map[string]string{"email": email, "password": password}, &a)
	if err != nil {
		return nil, err
	}
	return newSession(r, a, "/sign-in/email")
}

// SignInAnonymous creates an anonymous user (users.isAnonymous) and
// returns its session (anonymous plugin).
func (c *Client) SignInAnonymous(ctx context.Context) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, nil, "POST", "/sign-in/anonymous", nil, &a)
	if err != nil {
		return nil, err
	}
	return newSession(r, a, "/sign-in/anonymous")
}

// SignOut ends the session (sessions row or secondary-storage entry deleted).
func (c *Client) SignOut(ctx context.Context, s *Session) error {
	_, err := c.do(ctx, s, "POST", "/sign-out", map[string]any{}, nil)
	return err
}

// SessionInfo is a session as Better Auth reports it (get-session,
// list-sessions).
type SessionInfo struct {
	ID                   string    `json:"id"`
	Token                string    `json:"token"`
	UserID               string    `json:"userId"`
	ExpiresAt            time.Time `json:"expiresAt"`
	ActiveOrganizationID *string   `json:"activeOrganizationId"`
	ActiveTeamID         *string   `json:"activeTeamId"`
	ImpersonatedBy       *string   `json:"impersonatedBy"`
}

// GetSession returns the session s presents, or nil when Better Auth
// answers null (signed out, revoked, banned).
func (c *Client) GetSession(ctx context.Context, s *Session) (*SessionInfo, error) {
	var r *struct {
		Session SessionInfo `json:"session"`
	}
	if _, err := c.do(ctx, s, "GET", "/get-session", nil, &r); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	return &r.Session, nil
}

// ListSessions lists the user's live sessions.
func (c *Client) ListSessions(ctx context.Context, s *Session) ([]SessionInfo, error) {
	var r []SessionInfo
	_, err := c.do(ctx, s, "GET", "/list-sessions", nil, &r)
	return r, err
}

// RevokeSession ends one of the user's sessions, named by its raw token
// (SessionInfo.Token, Session.RawToken).
func (c *Client) RevokeSession(ctx context.Context, s *Session, token string) error {
	_, err := c.do(ctx, s, "POST", "/revoke-session", map[string]string{"token": token}, nil)
	return err
}

// RevokeSessions ends every session of the user, s included.
func (c *Client) RevokeSessions(ctx context.Context, s *Session) error {
	_, err := c.do(ctx, s, "POST", "/revoke-sessions", map[string]any{}, nil)
	return err
}

// RevokeOtherSessions ends every session of the user but s.
func (c *Client) RevokeOtherSessions(ctx context.Context, s *Session) error {
	_, err := c.do(ctx, s, "POST", "/revoke-other-sessions", map[string]any{}, nil)
	return err
}

// DeleteUser deletes the signed-in user (user.deleteUser enabled in the
// fixture), confirming with its password.
func (c *Client) DeleteUser(ctx context.Context, s *Session, password string) error {
	_, err := c.do(ctx, s, "POST", "/delete-user", map[string]string{"password": password}, nil)
	return err
}

// Token fetches a JWT for the session from the jwt plugin.
func (c *Client) Token(ctx context.Context, s *Session) (string, error) {
	var r struct {
		Token string `json:"token"`
	}
	if _, err := c.do(ctx, s, "GET", "/token", nil, &r); err != nil {
		return "", err
	}
	if r.Token == "" {
		return "", fmt.Errorf("better auth GET /token: empty token")
	}
	return r.Token, nil
}

// VerifyEmail verifies the user's email as a user clicking the link would:
// it asks Better Auth to send the verification email
// (/send-verification-email), reads the link the fixture kept
// (GET /test/verification-email, TEST_ROUTES=1), and calls Better Auth's
// /verify-email with its token. users.emailVerified is then true.
func (c *Client) VerifyEmail(ctx context.Context, s *Session) error {
	if _, err := c.do(ctx, s, "POST", "/send-verification-email", map[string]string{"email": s.Email}, nil); err != nil {
		return err
	}
	var sent struct {
		Token string `json:"token"`
	}
	if err := c.test(ctx, "GET", "/test/verification-email?email="+url.QueryEscape(s.Email), nil, &sent); err != nil {
		return err
	}
	_, err := c.do(ctx, nil, "GET", "/verify-email?token="+url.QueryEscape(sent.Token), nil, nil)
	return err
}
