package baclient

import (
	"context"
	"fmt"
	"time"
)

// The admin plugin's endpoints; s must be a global admin (users.role admin,
// ADMIN_EMAILS or ADMIN_USER_IDS in the fixture).

// SetRole sets a user's global role (users.role, comma-joined when several).
func (c *Client) SetRole(ctx context.Context, s *Session, userID string, roles ...string) error {
	_, err := c.do(ctx, s, "POST", "/admin/set-role", map[string]any{"userId": userID, "role": roles}, nil)
	return err
}

// BanUser bans a user for ever: users.banned, its sessions deleted.
func (c *Client) BanUser(ctx context.Context, s *Session, userID, reason string) error {
	return c.BanUserFor(ctx, s, userID, reason, 0)
}

// BanUserFor bans a user until expiresIn from now (users.banExpires; 0:
// for ever). Better Auth takes whole seconds.
func (c *Client) BanUserFor(ctx context.Context, s *Session, userID, reason string, expiresIn time.Duration) error {
	body := map[string]any{"userId": userID, "banReason": reason}
	if expiresIn > 0 {
		body["banExpiresIn"] = int64(expiresIn / time.Second)
	}
	_, err := c.do(ctx, s, "POST", "/admin/ban-user", body, nil)
	return err
}

// UnbanUser lifts a ban.
func (c *Client) UnbanUser(ctx context.Context, s *Session, userID string) error {
	_, err := c.do(ctx, s, "POST", "/admin/unban-user", map[string]string{"userId": userID}, nil)
	return err
}

// RevokeUserSessions deletes every session of a user.
func (c *Client) RevokeUserSessions(ctx context.Context, s *Session, userID string) error {
	_, err := c.do(ctx, s, "POST", "/admin/revoke-user-sessions", map[string]string{"userId": userID}, nil)
	return err
}

// RemoveUser deletes a user, its sessions and accounts.
func (c *Client) RemoveUser(ctx context.Context, s *Session, userID string) error {
	_, err := c.do(ctx, s, "POST", "/admin/remove-user", map[string]string{"userId": userID}, nil)
	return err
}

// Impersonate starts a session of userID for the admin s (1 hour;
// sessions.impersonatedBy = the admin) and returns it. Its Cookies include
// the admin plugin's admin_session cookie, which StopImpersonating needs.
func (c *Client) Impersonate(ctx context.Context, s *Session, userID string) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, s, "POST", "/admin/impersonate-user", map[string]string{"userId": userID}, &a)
	if err != nil {
		return nil, err
	}
	return newSession(r, a, "/admin/impersonate-user")
}

// StopImpersonating ends the impersonation session imp (deleted) and
// returns the admin's session, which Better Auth reads from the
// admin_session cookie (so the call goes by cookie, with an Origin).
func (c *Client) StopImpersonating(ctx context.Context, imp *Session) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, imp.ViaCookie(), "POST", "/admin/stop-impersonating", map[string]any{}, &a)
	if err != nil {
		return nil, err
	}
	s, err := newSession(r, a, "/admin/stop-impersonating")
	if err != nil {
		return nil, fmt.Errorf("stop impersonating: %w", err)
	}
	return s, nil
}
