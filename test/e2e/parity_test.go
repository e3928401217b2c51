package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/authz-sidecar/authz-sidecar/internal/pgtest"
	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// TestParity is the differential test of the sidecar against Better Auth
// itself: for the same member and permissions, the sidecar's Check must
// answer exactly what Better Auth's POST /organization/has-permission
// answers. It runs the fixture app with Better Auth's default singular
// table names and with the plural modelNames, and covers single and
// multi-role members, multi-permission requests, dynamic roles (created,
// updated, renamed), a dynamic role shadowed later by a static role of the
// same name, a static role that disappears (an unknown role), removed
// members, non-members, and an organization admin trying to claim a
// static role's name. Every disagreement fails the test; none is
// documented as deliberate (organization slugs, which only the sidecar
// accepts, are not compared: Better Auth's has-permission takes ids).
func TestParity(t *testing.T) {
	for _, schema := range []string{"singular", "plural"} {
		t.Run(schema, func(t *testing.T) { parity(t, schema) })
	}
}

// permissionSets are what the generated policy's routes require: every
// single permission of the fixture's statements, and pairs and triples
// that mix resources (the case where a union of roles and Better Auth's
// one-role rule disagree).
func permissionSets(statements map[string][]string) [][]string {
	var singles []string
	for _, res := range slices.Sorted(mapKeys(statements)) {
		for _, act := range statements[res] {
			singles = append(singles, res+":"+act)
		}
	}
	sets := make([][]string, 0, len(singles)*3)
	for _, p := range singles {
		sets = append(sets, []string{p})
	}
	for i := range singles {
		for _, step := range []int{1, 5} {
			j := (i + step) % len(singles)
			sets = append(sets, []string{singles[i], singles[j]})
		}
		if i%2 == 0 {
			sets = append(sets, []string{singles[i], singles[(i+3)%len(singles)], singles[(i+7)%len(singles)]})
		}
	}
	// Dedupe sets that repeat a permission.
	out := sets[:0]
	for _, s := range sets {
		slices.Sort(s)
		if len(slices.Compact(slices.Clone(s))) == len(s) {
			out = append(out, s)
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// printRoles runs the fixture's print-roles.ts (what an app team runs) with
// env, and writes its output to dir/roles.json.
func printRoles(t *testing.T, dir string, env ...string) map[string]any {
	t.Helper()
	fixture := filepath.Join(testproc.RepoRootT(t), "test", "betterauth")
	cmd := exec.Command(filepath.Join(fixture, "node_modules", ".bin", "bun"), "print-roles.ts")
	cmd.Dir, cmd.Env = fixture, append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("print-roles.ts: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "roles.json"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// parityPolicy writes a policy whose roles are the app's (app_roles) and
// whose route i requires sets[i], in the organization of its path.
func parityPolicy(t *testing.T, dir, baseURL string, sets [][]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "session: { base_url: %q, cookie: false, bearer: signed }\n", baseURL)
	b.WriteString("organization: { from: [path:org] }\napp_roles: roles.json\nroutes:\n")
	for i, s := range sets {
		fmt.Fprintf(&b, "  - { name: p%d, methods: [GET], path: \"/p/{org}/%d\", require: [%s] }\n", i, i, strings.Join(s, ", "))
	}
	p := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type parityWorld struct {
	t        *testing.T
	dbURL    string
	redisURL string
	channel  string
	prefix   string
	schema   string
	dir      string
	secret   string // file holding the fixture's secret

	ba      *testproc.BetterAuth
	client  *baclient.Client
	sidecar *testproc.Sidecar
	check   authv3.AuthorizationClient
	sets    [][]string
	users   map[string]*baclient.Session
	orgs    map[string]string // name -> id
	agree   int
}

func parity(t *testing.T, schema string) {
	ctx := context.Background()
	redisURL, prefix := freshRedis(t)
	w := &parityWorld{
		t: t, dbURL: pgtest.NewEmptyDatabase(t), redisURL: redisURL, prefix: prefix,
		channel: prefix + "invalidate", schema: schema, dir: t.TempDir(),
		users: map[string]*baclient.Session{}, orgs: map[string]string{},
	}
	w.secret = secretFile(t)

	// Phase 1: the app's own roles.
	w.start("")
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "judy", "kate", "lena"} {
		s, err := w.client.SignUp(ctx, name+"@parity.test", password, name)
		if err != nil {
			t.Fatal(err)
		}
		w.users[name] = s
	}
	alice := w.users["alice"]
	var err error
	if w.orgs["acme"], err = w.client.CreateOrganization(ctx, alice, "Acme", "acme-"+randSuffix()); err != nil {
		t.Fatal(err)
	}
	if w.orgs["globex"], err = w.client.CreateOrganization(ctx, alice, "Globex", "globex-"+randSuffix()); err != nil {
		t.Fatal(err)
	}
	acme, globex := w.orgs["acme"], w.orgs["globex"]
	// Dynamic roles, within the app's statements.
	for name, perms := range map[string]map[string][]string{
		"auditor":  {"leave": {"read"}, "ac": {"read"}},
		"approver": {"leave": {"approve"}},
		"reviewer": {"leave": {"approve"}, "team": {"create"}},
		"inviter":  {"invitation": {"create", "cancel"}, "member": {"create"}},
	} {
		if err := w.client.CreateRole(ctx, alice, acme, name, perms); err != nil {
			t.Fatalf("create role %s: %v", name, err)
		}
	}
	members := map[string][]string{
		"bob": {"admin"}, "carol": {"member"}, "dave": {"admin", "member"}, "erin": {"member", "approver"},
		"frank": {"auditor"}, "gina": {"approver", "inviter"}, "hank": {"member", "auditor", "inviter"},
		"ivy": {"member"}, "kate": {"reviewer"},
	}
	memberIDs := map[string]string{}
	for _, name := range slices.Sorted(mapKeys(members)) {
		id, err := w.client.AddMember(ctx, alice, w.users[name], acme, members[name]...)
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		memberIDs[name] = id
	}
	if _, err := w.client.AddMember(ctx, alice, w.users["carol"], globex, "admin"); err != nil {
		t.Fatal(err)
	}
	// ivy is removed again; judy never joins.
	w.changed(func() error { return w.client.RemoveMember(ctx, alice, acme, memberIDs["ivy"]) })

	// Role claiming: an organization admin may create dynamic roles, but
	// never one named like a static role (any case), so no member can be
	// given a static role's name with the admin's chosen permissions.
	for _, name := range []string{"member", "Admin", "OWNER"} {
		if err := w.client.CreateRole(ctx, w.users["bob"], acme, name, map[string][]string{"leave": {"read"}}); err == nil {
			t.Errorf("Better Auth let an organization admin create a dynamic role named %q", name)
		}
	}
	w.compareAll("app roles")

	// A dynamic role's permissions change; another is renamed.
	w.changed(func() error {
		return w.client.UpdateRole(ctx, alice, acme, "auditor", map[string][]string{"leave": {"read", "request"}, "ac": {"read"}})
	})
	w.changed(func() error { return w.renameRole(ctx, alice, acme, "inviter", "recruiter") })
	w.compareAll("roles updated")

	// Phase 2: the app adds a static role named like an existing dynamic
	// role: Better Auth merges the two; the sidecar's roles come from the
	// app's new printout (app_roles), so it must merge too. lena gets the
	// static role in globex, where no dynamic role of that name exists.
	w.start(`reviewer:{"leave":["read"],"invitation":["cancel"]}`)
	w.users["lena"] = w.signIn("lena")
	if _, err := w.client.AddMember(ctx, w.signIn("alice"), w.users["lena"], globex, "reviewer"); err != nil {
		t.Fatalf("add lena: %v", err)
	}
	w.compareAll("static role added")

	// Phase 3: the static role is gone again. kate keeps the dynamic one;
	// lena's role is now unknown to Better Auth and to the sidecar.
	w.start("")
	w.compareAll("static role removed")
	t.Logf("%s: %d (member, permissions) pairs agree with Better Auth", schema, w.agree)
}

// start (re)starts Better Auth with the given extra static role and a
// sidecar whose roles are the app's printout for it.
func (w *parityWorld) start(extra string) {
	t := w.t
	if w.ba != nil {
		w.ba.Stop(5 * time.Second)
		w.sidecar.Stop(5 * time.Second)
	}
	env := []string{"SCHEMA=" + w.schema, "INVALIDATION_REDIS_URL=" + w.redisURL, "INVALIDATION_CHANNEL=" + w.channel,
		"INVALIDATION_REDIS_PREFIX=" + w.prefix}
	if extra != "" {
		env = append(env, "EXTRA_STATIC_ROLE="+extra)
	}
	w.ba = startBetterAuth(t, w.dbURL, env...)
	w.client = baclient.New(w.ba.URL)
	roles := printRoles(t, w.dir, env...)
	statements := map[string][]string{}
	for res, acts := range roles["organization"].(map[string]any)["statements"].(map[string]any) {
		for _, a := range acts.([]any) {
			statements[res] = append(statements[res], a.(string))
		}
	}
	w.sets = permissionSets(statements)
	policy := parityPolicy(t, w.dir, w.ba.URL, w.sets)
	w.sidecar = startSidecar(t, policy, w.dbURL, "--better-auth-secret-file", w.secret,
		"--redis-url", w.redisURL, "--redis-prefix", w.prefix, "--invalidation-channel", w.channel,
		"--check-timeout", "10s")
	w.check = authv3.NewAuthorizationClient(w.sidecar.Conn)
	for name, s := range w.users {
		if s != nil && w.users[name].Token == "" {
			t.Fatalf("%s has no session", name)
		}
	}
}

func (w *parityWorld) signIn(name string) *baclient.Session {
	s, err := w.client.SignIn(context.Background(), name+"@parity.test", password)
	if err != nil {
		w.t.Fatal(err)
	}
	w.users[name] = s
	return s
}

// changed makes a change through Better Auth and waits until the sidecar
// has applied the invalidation it publishes (an event, not a timeout).
func (w *parityWorld) changed(change func() error) {
	t := w.t
	before := metric(t, w.sidecar, "authz_invalidations_total")
	if err := change(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, w.sidecar, "authz_invalidations_total") <= before {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar never applied the change's invalidation")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *parityWorld) renameRole(ctx context.Context, s *baclient.Session, orgID, from, to string) error {
	return w.client.RenameRole(ctx, s, orgID, from, to)
}

// compareAll asks both for every user, organization and permission set.
func (w *parityWorld) compareAll(phase string) {
	t := w.t
	type job struct {
		user, org string
		set       int
	}
	var jobs []job
	for _, user := range slices.Sorted(mapKeys(w.users)) {
		for _, org := range slices.Sorted(mapKeys(w.orgs)) {
			for i := range w.sets {
				jobs = append(jobs, job{user, org, i})
			}
		}
	}
	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		next     = make(chan job)
	)
	for range 8 {
		wg.Go(func() {
			for j := range next {
				s := w.users[j.user]
				orgID := w.orgs[j.org]
				perms := map[string][]string{}
				for _, p := range w.sets[j.set] {
					res, act, _ := strings.Cut(p, ":")
					perms[res] = append(perms[res], act)
				}
				ba, err := w.client.HasPermission(context.Background(), s, orgID, perms)
				if err != nil {
					// A non-member (401), or an organization whose roles
					// Better Auth cannot read (500): not granted.
					var be *baclient.Error
					if !errors.As(err, &be) {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("has-permission %s %s: %v", j.user, j.org, err))
						mu.Unlock()
						continue
					}
					ba = false
				}
				status, body := checkBearer(t, w.check, fmt.Sprintf("/p/%s/%d", orgID, j.set), s.Token)
				sidecar := status == 200
				mu.Lock()
				if sidecar != ba || (status != 200 && status != 403) {
					failures = append(failures, fmt.Sprintf("%s: %s in %s asks %v: Better Auth %v, sidecar %d %s",
						phase, j.user, j.org, w.sets[j.set], ba, status, body))
				} else {
					w.agree++
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more", len(failures)-20)
			break
		}
		t.Error(f)
	}
	if len(failures) > 0 {
		t.FailNow()
	}
}

// checkBearer asks the sidecar about GET path with a bearer session token.
func checkBearer(t *testing.T, c authv3.AuthorizationClient, path, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Headers: map[string]string{"authorization": "Bearer " + token},
		}},
	}})
	if err != nil {
		t.Errorf("check: %v", err)
		return 0, ""
	}
	if resp.GetOkResponse() != nil {
		return 200, ""
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), resp.GetDeniedResponse().GetBody()
}
