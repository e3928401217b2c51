package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// actor is who sends a request: a member of the organization with one
// role, a signed-in user outside it, or nobody (no token).
type actor int

const (
	owner actor = iota
	admin
	member
	outsider
	anonymous
	numActors
)

func (a actor) String() string {
	switch a {
	case owner:
		return "owner"
	case admin:
		return "admin"
	case member:
		return "member"
	case outsider:
		return "outsider"
	case anonymous:
		return "anonymous"
	}
	return "actor(" + strconv.Itoa(int(a)) + ")"
}

// action is what a request asks to do, on the routes of policies.yaml.
type action int

const (
	readLeave    action = iota // GET /api/orgs/{org}/leave/{id}: route read-leave
	approveLeave               // POST /api/orgs/{org}/leave/{id}/approve: route approve-leave
)

func (a action) method() string {
	if a == approveLeave {
		return "POST"
	}
	return "GET"
}

// path is the request target for leave request id in organization orgID.
func (a action) path(orgID string, id uint64) string {
	p := "/api/orgs/" + orgID + "/leave/" + strconv.FormatUint(id, 10)
	if a == approveLeave {
		p += "/approve"
	}
	return p
}

// kind is one sort of request in the mix and the status nginx must answer
// it with when the sidecar is asked.
type kind struct {
	name   string
	who    actor
	what   action
	weight int // share of the mix, out of the sum of all weights
	status int // expected status through nginx with auth_request
}

// defaultMix is the traffic of the run: 80% allowed (members reading leave,
// admins and the owner approving it), 20% denied (a member approving, a user
// of another organization, no token at all).
func defaultMix() []kind {
	return []kind{
		{name: "member reads leave", who: member, what: readLeave, weight: 45, status: 200},
		{name: "admin reads leave", who: admin, what: readLeave, weight: 10, status: 200},
		{name: "admin approves leave", who: admin, what: approveLeave, weight: 20, status: 200},
		{name: "owner approves leave", who: owner, what: approveLeave, weight: 5, status: 200},
		{name: "member approves leave", who: member, what: approveLeave, weight: 10, status: 403},
		{name: "outsider reads leave", who: outsider, what: readLeave, weight: 5, status: 403},
		{name: "no token reads leave", who: anonymous, what: readLeave, weight: 5, status: 401},
	}
}

// schedule lays the kinds out over one cycle of as many slots as the
// weights add up to, with nginx's smooth weighted round-robin: each kind
// appears weight times and the kinds are interleaved, so every stretch of
// requests, not only the whole run, has about the mix's proportions.
// Request i of a phase is kind schedule[i % len(schedule)].
func schedule(mix []kind) []int {
	total := 0
	for _, k := range mix {
		total += k.weight
	}
	current := make([]int, len(mix))
	out := make([]int, 0, total)
	for range total {
		best := -1
		for i, k := range mix {
			if k.weight <= 0 {
				continue
			}
			current[i] += k.weight
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out = append(out, best)
	}
	return out
}

// identity is a seeded user as the load sees it.
type identity struct {
	userID string
	auth   string // the Authorization header value; empty for anonymous
}

// world is what seeding made: one organization and a user per actor.
type world struct {
	orgID string
	users [numActors]identity
}

// call is one request of a phase and the answer it must get.
type call struct {
	kind   int // index in the mix
	method string
	url    string
	auth   string // Authorization header value; empty: none
	want   expectation
}

// plan makes the requests of one phase against one nginx server.
type plan struct {
	base    string // http://127.0.0.1:PORT of the nginx server
	mix     []kind
	sched   []int
	world   world
	guarded bool // the server asks the sidecar (auth_request); false: the baseline
}

// leaveIDs is how many distinct leave ids the paths cycle through: the
// sidecar's caches are keyed by user and organization, so this only keeps
// the paths from being identical.
const leaveIDs = 1000

// call returns request i of the phase.
func (p *plan) call(i uint64) call {
	ki := p.sched[i%uint64(len(p.sched))]
	k := p.mix[ki]
	u := p.world.users[k.who]
	path := k.what.path(p.world.orgID, i%leaveIDs+1)
	c := call{kind: ki, method: k.what.method(), url: p.base + path, auth: u.auth}
	c.want = expectation{status: k.status, request: c.method + " " + path}
	switch {
	case !p.guarded:
		// Without auth_request everything reaches the application, which
		// must see no identity: nginx clears the headers a client could forge.
		c.want.status = 200
		c.want.upstream = true
	case k.status == 200:
		c.want.upstream = true
		c.want.userID, c.want.orgID = u.userID, p.world.orgID
	}
	return c
}

// expectation is what one answer must be.
type expectation struct {
	status int
	// upstream: the request must have reached the echo application (and
	// when false, must not have).
	upstream bool
	// request is "METHOD URI" as the application must have received it.
	request string
	// userID and orgID are the identity nginx must have passed to the
	// application (empty: none).
	userID, orgID string
}

// echoPrefix starts every answer of the echo application (the upstream
// server block of the nginx config in scripts/loadtest.sh).
const echoPrefix = "upstream: "

// check compares an answer with e. A deny that reached the application,
// an allow that did not, or an allow under another identity are as wrong
// as a wrong status.
func (e expectation) check(status int, body []byte) error {
	if status != e.status {
		return fmt.Errorf("status %d, want %d", status, e.status)
	}
	reached := bytes.HasPrefix(body, []byte(echoPrefix))
	if reached != e.upstream {
		if reached {
			return errors.New("a denied request reached the application")
		}
		return fmt.Errorf("status %d but the answer is not the application's (body %q)", status, truncate(body, 80))
	}
	if !reached {
		return nil
	}
	fields := echoFields(body)
	for _, f := range []struct{ name, want string }{
		{"upstream", e.request},
		{"x-auth-user-id", e.userID},
		{"x-auth-org-id", e.orgID},
	} {
		got, ok := fields[f.name]
		if !ok {
			return fmt.Errorf("the application's answer lacks %s (body %q)", f.name, truncate(body, 120))
		}
		if got != f.want {
			return fmt.Errorf("the application saw %s %q, want %q", f.name, got, f.want)
		}
	}
	return nil
}

// echoFields reads the echo application's "name: value" lines.
func echoFields(body []byte) map[string]string {
	out := make(map[string]string, 4)
	for line := range bytes.Lines(body) {
		// An empty value still has its ": " (nginx writes "name: $var\n").
		if name, value, ok := bytes.Cut(bytes.TrimRight(line, "\n"), []byte(": ")); ok {
			out[string(name)] = string(value)
		}
	}
	return out
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
