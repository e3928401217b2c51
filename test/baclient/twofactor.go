package baclient

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TwoFactor is what EnableTwoFactor set up.
type TwoFactor struct {
	// Secret is the TOTP secret, base32 as in the otpauth:// URI.
	Secret      string
	BackupCodes []string
	// Session replaces the session that enabled two-factor authentication,
	// which Better Auth deleted.
	Session *Session
}

// EnableTwoFactor turns on TOTP two-factor authentication for the user of
// s (users.twoFactorEnabled) as an authenticator app would:
// /two-factor/enable with the password, then /two-factor/verify-totp with
// a code computed from the secret in the returned totpURI. Better Auth then
// replaces the session; s is no longer valid.
func (c *Client) EnableTwoFactor(ctx context.Context, s *Session, password string) (*TwoFactor, error) {
	var en struct {
		TotpURI     string   `json:"totpURI"`
		BackupCodes []string `json:"backupCodes"`
	}
	if _, err := c.do(ctx, s, "POST", "/two-factor/enable", map[string]string{"password": password}, &en); err != nil {
		return nil, err
	}
	u, err := url.Parse(en.TotpURI)
	if err != nil {
		return nil, fmt.Errorf("two-factor: totpURI %q: %w", en.TotpURI, err)
	}
	secret := u.Query().Get("secret")
	code, err := TOTP(secret, time.Now())
	if err != nil {
		return nil, err
	}
	var a authResponse
	r, err := c.do(ctx, s, "POST", "/two-factor/verify-totp", map[string]string{"code": code}, &a)
	if err != nil {
		return nil, err
	}
	// The answer names no user; the new session is the same user's.
	a.User.ID, a.User.Email = s.UserID, s.Email
	ns, err := newSession(r, a, "/two-factor/verify-totp")
	if err != nil {
		return nil, err
	}
	return &TwoFactor{Secret: secret, BackupCodes: en.BackupCodes, Session: ns}, nil
}

// SignInTOTP signs in a user with two-factor authentication: the password
// sign-in answers with a two_factor cookie and no session, which
// /two-factor/verify-totp (by cookie, with an Origin) exchanges, with the
// current code of secret, for the session.
func (c *Client) SignInTOTP(ctx context.Context, email, password, secret string) (*Session, error) {
	var a authResponse
	r, err := c.do(ctx, nil, "POST", "/sign-in/email", map[string]string{"email": email, "password": password}, &a)
	if err != nil {
		return nil, err
	}
	if !a.TwoFactorRedirect {
		return nil, fmt.Errorf("better auth /sign-in/email: %s has no second factor", email)
	}
	code, err := TOTP(secret, time.Now())
	if err != nil {
		return nil, err
	}
	r, err = c.send(ctx, call{method: "POST", path: "/api/auth/two-factor/verify-totp",
		cookies: liveCookies(r.cookies), in: map[string]string{"code": code}})
	if err != nil {
		return nil, err
	}
	var v authResponse
	if err := decode("POST", "/two-factor/verify-totp", r.body, &v); err != nil {
		return nil, err
	}
	return newSession(r, v, "/two-factor/verify-totp")
}

// TOTP is the RFC 6238 code of secret (base32, unpadded or padded) at t:
// HMAC-SHA1, 30-second steps, 6 digits (Better Auth's defaults).
func TOTP(secret string, t time.Time) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		return "", fmt.Errorf("totp: secret is not base32: %w", err)
	}
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(t.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(counter[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	code := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", code%1_000_000), nil
}
