// Package baclient is a small client of Better Auth's HTTP API (1.7.25,
// with the organization, jwt, bearer and admin plugins), used by the
// end-to-end tests and the demo to drive a real Better Auth exactly as an
// application would. Every write to Better Auth goes through here; the
// sidecar itself never writes.
package baclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one Better Auth server.
type Client struct {
	// BaseURL is Better Auth's base URL, e.g. http://127.0.0.1:3000.
	BaseURL string
	HTTP    *http.Client
}

// New returns a client of the Better Auth server at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 15 * time.Second}}
}

// Session is a signed-in user: Token is the bearer plugin's signed session
// token (the set-auth-token header).
type Session struct {
	Token  string
	UserID string
	Email  string
}

// Error is a non-2xx answer from Better Auth.
type Error struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *Error) Error() string {
	return fmt.Sprintf("better auth %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

func (c *Client) do(ctx context.Context, s *Session, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+"/api/auth"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil {
		// Bearer requests without cookies skip the Origin check.
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("better auth %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("better auth %s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.Header, &Error{Method: method, Path: path, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, fmt.Errorf("better auth %s %s: decode %q: %w", method, path, b, err)
		}
	}
	return resp.Header, nil
}

type authResponse struct {
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
}

func (c *Client) session(h http.Header, r authResponse, path string) (*Session, error) {
	tok := h.Get("set-auth-token")
	if tok == "" {
		return nil, fmt.Errorf("better auth %s: no set-auth-token header (is the bearer plugin on?)", path)
	}
	return &Session{Token: tok, UserID: r.User.ID, Email: r.User.Email}, nil
}

// SignUp creates a user with email and password and returns its session.
func (c *Client) SignUp(ctx context.Context, email, password, name string) (*Session, error) {
	var r authResponse
	h, err := c.do(ctx, nil, "POST", "/sign-up/email", map[string]string{"email": email, "password": password, "name": name}, &r)
	if err != nil {
		return nil, err
	}
	return c.session(h, r, "/sign-up/email")
}

// SignIn starts a new session for an existing user.
func (c *Client) SignIn(ctx context.Context, email, password string) (*Session, error) {
	var r authResponse
	h, err := c.do(ctx, nil, "POST", "/sign-in/email", map[string]string{"email": email, "password": password}, &r)
	if err != nil {
		return nil, err
	}
	return c.session(h, r, "/sign-in/email")
}

// CreateOrganization creates an organization; its creator becomes owner.
func (c *Client) CreateOrganization(ctx context.Context, s *Session, name, slug string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/create", map[string]string{"name": name, "slug": slug}, &r)
	return r.ID, err
}

// Invite invites email into the organization with one or more roles and
// returns the invitation id.
func (c *Client) Invite(ctx context.Context, s *Session, orgID, email string, roles ...string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/invite-member",
		map[string]any{"email": email, "role": roles, "organizationId": orgID}, &r)
	return r.ID, err
}

// Accept accepts an invitation as the invited user and returns the new
// member id.
func (c *Client) Accept(ctx context.Context, s *Session, invitationID string) (string, error) {
	var r struct {
		Member struct {
			ID string `json:"id"`
		} `json:"member"`
	}
	_, err := c.do(ctx, s, "POST", "/organization/accept-invitation", map[string]string{"invitationId": invitationID}, &r)
	return r.Member.ID, err
}

// AddMember invites email with roles and accepts as invitee; it returns the
// member id.
func (c *Client) AddMember(ctx context.Context, inviter, invitee *Session, orgID string, roles ...string) (string, error) {
	inv, err := c.Invite(ctx, inviter, orgID, invitee.Email, roles...)
	if err != nil {
		return "", err
	}
	return c.Accept(ctx, invitee, inv)
}

// CreateRole defines a dynamic role in the organization, e.g.
// permission {"leave": ["read", "approve"]}. Better Auth lowercases role.
func (c *Client) CreateRole(ctx context.Context, s *Session, orgID, role string, permission map[string][]string) error {
	_, err := c.do(ctx, s, "POST", "/organization/create-role",
		map[string]any{"role": role, "permission": permission, "organizationId": orgID}, nil)
	return err
}

// UpdateMemberRole replaces a member's roles.
func (c *Client) UpdateMemberRole(ctx context.Context, s *Session, orgID, memberID string, roles ...string) error {
	_, err := c.do(ctx, s, "POST", "/organization/update-member-role",
		map[string]any{"memberId": memberID, "role": roles, "organizationId": orgID}, nil)
	return err
}

// RemoveMember removes a member (by member id or email).
func (c *Client) RemoveMember(ctx context.Context, s *Session, orgID, memberIDOrEmail string) error {
	_, err := c.do(ctx, s, "POST", "/organization/remove-member",
		map[string]string{"memberIdOrEmail": memberIDOrEmail, "organizationId": orgID}, nil)
	return err
}

// SetActive sets the session's active organization (which the fixture's
// jwt definePayload copies into the activeOrganizationId claim).
func (c *Client) SetActive(ctx context.Context, s *Session, orgID string) error {
	_, err := c.do(ctx, s, "POST", "/organization/set-active", map[string]string{"organizationId": orgID}, nil)
	return err
}

// BanUser bans a user through the admin plugin (s must be a global admin).
func (c *Client) BanUser(ctx context.Context, s *Session, userID, reason string) error {
	_, err := c.do(ctx, s, "POST", "/admin/ban-user", map[string]string{"userId": userID, "banReason": reason}, nil)
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
