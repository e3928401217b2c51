// Command demo seeds a running Better Auth through its HTTP API (users, an
// organization, members with several roles, a custom role), signs each
// user in, asks a running authz-sidecar for decisions over gRPC exactly as
// Envoy would, with the session cookie Better Auth set (the app has no jwt
// plugin: cookie sessions alone), and prints them as a table; then it signs
// a user out and shows the cookie refused. scripts/demo.sh starts
// everything it needs; run "make demo".
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type user struct {
	name   string
	roles  []string // nil: not a member
	sess   *baclient.Session
	cookie string // the Cookie header a browser would send
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	baURL := fs.String("better-auth", "http://127.0.0.1:3000", "Better Auth base URL")
	grpcAddr := fs.String("sidecar", "127.0.0.1:9191", "authz-sidecar gRPC address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ba := baclient.New(*baURL)
	b := make([]byte, 3)
	rand.Read(b)
	run := hex.EncodeToString(b)

	users := []*user{
		{name: "alice", roles: []string{"owner"}},
		{name: "bob", roles: []string{"admin"}},
		{name: "carol", roles: []string{"member"}},
		{name: "dave", roles: []string{"admin", "member"}},
		{name: "erin", roles: []string{"member", "approver"}},
		{name: "frank"},
	}
	for _, u := range users {
		s, err := ba.SignUp(ctx, fmt.Sprintf("%s-%s@example.test", u.name, run), "demo-password-123", u.name)
		if err != nil {
			return fmt.Errorf("sign up %s: %w", u.name, err)
		}
		u.sess = s
	}
	alice := users[0].sess
	orgID, err := ba.CreateOrganization(ctx, alice, "Acme "+run, "acme-"+run)
	if err != nil {
		return fmt.Errorf("create organization: %w", err)
	}
	if err := ba.CreateRole(ctx, alice, orgID, "approver", map[string][]string{"leave": {"read", "approve"}}); err != nil {
		return fmt.Errorf("create custom role: %w", err)
	}
	for _, u := range users[1:] {
		if u.roles == nil {
			continue
		}
		invRoles := u.roles
		if slices.Contains(u.roles, "approver") {
			// A custom role is given after joining, as an admin would.
			invRoles = []string{"member"}
		}
		memberID, err := ba.AddMember(ctx, alice, u.sess, orgID, invRoles...)
		if err != nil {
			return fmt.Errorf("add %s: %w", u.name, err)
		}
		if len(invRoles) != len(u.roles) {
			if err := ba.UpdateMemberRole(ctx, alice, orgID, memberID, u.roles...); err != nil {
				return fmt.Errorf("give %s %v: %w", u.name, u.roles, err)
			}
		}
	}
	for _, u := range users {
		// Sign in as a browser would; the cookie Better Auth sets is the
		// credential. The app makes the organization the session's active
		// one (organization/set-active), which /api/leave follows.
		s, err := ba.SignIn(ctx, u.sess.Email, "demo-password-123")
		if err != nil {
			return fmt.Errorf("sign in %s: %w", u.name, err)
		}
		if u.roles != nil {
			if err := ba.SetActive(ctx, s, orgID); err != nil {
				return fmt.Errorf("set-active %s: %w", u.name, err)
			}
		}
		u.sess, u.cookie = s, s.Cookie.Name+"="+s.Cookie.Value
	}

	conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	fmt.Fprintf(out, "Better Auth %s (no jwt plugin: cookie sessions), organization %q (id %s), sidecar %s\n\n", *baURL, "acme-"+run, orgID, *grpcAddr)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLES\tMETHOD\tPATH\tANSWER\tREASON")
	org := "/api/orgs/" + orgID
	requests := []struct{ method, path string }{
		{"GET", "/api/leave"},
		{"POST", org + "/leave"},
		{"POST", org + "/leave/42/approve"},
		{"DELETE", org},
	}
	for _, u := range users {
		roles := strings.Join(u.roles, ",")
		if roles == "" {
			roles = "(none)"
		}
		for _, r := range requests {
			status, reason, err := check(ctx, client, r.method, r.path, u.cookie, *baURL)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.name, roles, r.method, shorten(r.path, orgID), answer(status), reason)
		}
	}
	alice = users[0].sess
	forged := alice.Cookie.Name + "=" + strings.Split(alice.Cookie.Value, ".")[0] + ".forged"
	for _, c := range []struct{ who, cookie, origin, method, path string }{
		{"(anonymous)", "", "", "GET", "/healthz"},
		{"(anonymous)", "", "", "GET", org + "/leave/42"},
		{"(forged cookie)", forged, "", "GET", org + "/leave/42"},
		{"carol", users[2].cookie, "", "GET", "/api/orgs/acme-" + run + "/leave/42"},
		{"carol", users[2].cookie, "", "GET", "/api/admin/../orgs/" + orgID},
		{"bob (cross-site)", users[1].cookie, "https://evil.example", "POST", org + "/leave/42/approve"},
		{"alice", users[0].cookie, "", "GET", "/api/unknown"},
	} {
		status, reason, err := check(ctx, client, c.method, c.path, c.cookie, c.origin)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.who, "-", c.method, shorten(c.path, orgID), answer(status), reason)
	}
	// Sign-out deletes the session and Better Auth's hook publishes it on
	// the invalidation channel: the cookie, cached by the sidecar a moment
	// ago, is refused as soon as the message arrives.
	start := time.Now()
	if err := ba.SignOut(ctx, users[3].sess); err != nil {
		return fmt.Errorf("sign out dave: %w", err)
	}
	var status int
	var reason string
	for {
		if status, reason, err = check(ctx, client, "GET", "/api/leave", users[3].cookie, ""); err != nil {
			return err
		}
		if status != 200 || time.Since(start) > 5*time.Second {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", "dave (signed out)", "admin,member", "GET", "/api/leave", answer(status),
		fmt.Sprintf("%s (%d ms after the sign-out call began)", reason, time.Since(start).Milliseconds()))
	if err := tw.Flush(); err != nil {
		return err
	}
	if status == 200 {
		return errors.New("dave's cookie still works 5 s after sign-out: is the invalidation channel wired?")
	}
	return nil
}

func shorten(path, orgID string) string { return strings.ReplaceAll(path, orgID, "{org}") }

func answer(status int) string {
	if status == 200 {
		return "allow"
	}
	return fmt.Sprintf("deny %d", status)
}

// check asks the sidecar as Envoy would, with a browser's Cookie header and
// Origin (a same-origin request when origin is Better Auth's own URL).
func check(ctx context.Context, c authv3.AuthorizationClient, method, path, cookie, origin string) (int, string, error) {
	h := map[string]string{"host": "app.example.test", "user-agent": "demo"}
	if cookie != "" {
		h["cookie"] = cookie
	}
	if origin != "" {
		h["origin"] = origin
	}
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}},
	}})
	if err != nil {
		return 0, "", fmt.Errorf("check %s %s: %w", method, path, err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		for _, hv := range ok.GetHeaders() {
			if hv.GetHeader().GetKey() == "x-auth-roles" {
				return 200, "granted (x-auth-roles: " + hv.GetHeader().GetValue() + ")", nil
			}
		}
		return 200, resp.GetStatus().GetMessage(), nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return 0, "", errors.New("response without http answer")
	}
	var body struct {
		Message string `json:"message"`
		Detail  string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		return 0, "", fmt.Errorf("deny body %q: %w", d.GetBody(), err)
	}
	msg := resp.GetStatus().GetMessage() + ": " + body.Message
	if body.Detail != "" {
		msg += " (" + body.Detail + ")"
	}
	return int(d.GetStatus().GetCode()), msg, nil
}
