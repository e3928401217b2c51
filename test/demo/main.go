// Command demo seeds a running Better Auth through its HTTP API (users, an
// organization, members with several roles, a custom role), fetches each
// user's JWT, asks a running authz-sidecar for decisions over gRPC exactly
// as Envoy would, and prints them as a table. scripts/demo.sh starts
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
	name  string
	roles []string // nil: not a member
	sess  *baclient.Session
	token string
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
		if u.token, err = ba.Token(ctx, u.sess); err != nil {
			return fmt.Errorf("token for %s: %w", u.name, err)
		}
	}

	conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	fmt.Fprintf(out, "Better Auth %s, organization %q (id %s), sidecar %s\n\n", *baURL, "acme-"+run, orgID, *grpcAddr)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLES\tMETHOD\tPATH\tANSWER\tREASON")
	org := "/api/orgs/" + orgID
	requests := []struct{ method, path string }{
		{"GET", org + "/leave/42"},
		{"POST", org + "/leave"},
		{"POST", org + "/leave/42/approve"},
		{"POST", org + "/members"},
		{"DELETE", org},
	}
	for _, u := range users {
		roles := strings.Join(u.roles, ",")
		if roles == "" {
			roles = "(none)"
		}
		for _, r := range requests {
			status, reason, err := check(ctx, client, r.method, r.path, "Bearer "+u.token)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.name, roles, r.method, shorten(r.path, orgID), answer(status), reason)
		}
	}
	for _, c := range []struct{ who, auth, method, path string }{
		{"(anonymous)", "", "GET", "/healthz"},
		{"(anonymous)", "", "GET", org + "/leave/42"},
		{"(forged)", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "GET", org + "/leave/42"},
		{"carol", "Bearer " + users[2].token, "GET", "/api/orgs/acme-" + run + "/leave/42"},
		{"carol", "Bearer " + users[2].token, "GET", "/api/admin/../orgs/" + orgID},
		{"alice", "Bearer " + users[0].token, "GET", "/api/unknown"},
	} {
		status, reason, err := check(ctx, client, c.method, c.path, c.auth)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.who, "-", c.method, shorten(c.path, orgID), answer(status), reason)
	}
	return tw.Flush()
}

func shorten(path, orgID string) string { return strings.ReplaceAll(path, orgID, "{org}") }

func answer(status int) string {
	if status == 200 {
		return "allow"
	}
	return fmt.Sprintf("deny %d", status)
}

func check(ctx context.Context, c authv3.AuthorizationClient, method, path, auth string) (int, string, error) {
	h := map[string]string{"host": "app.example.test", "user-agent": "demo"}
	if auth != "" {
		h["authorization"] = auth
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
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		return 0, "", fmt.Errorf("deny body %q: %w", d.GetBody(), err)
	}
	return int(d.GetStatus().GetCode()), resp.GetStatus().GetMessage() + ": " + body.Reason, nil
}
