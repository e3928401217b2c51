package baclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authz-sidecar/authz-sidecar/internal/testproc"
	"github.com/authz-sidecar/authz-sidecar/test/baclient"
)

// message is an invalidation message (docs/consistency.md).
type message struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	User    string `json:"user"`
	Org     string `json:"org"`
	Session string `json:"session"`
	APIKey  string `json:"apikey"`
}

func (m message) String() string {
	return fmt.Sprintf("%s(user=%s org=%s session=%s apikey=%s)", m.Kind, m.User, m.Org, m.Session, m.APIKey)
}

// inbox collects the messages published on a channel.
type inbox struct {
	mu   sync.Mutex
	msgs []message // guarded by mu
}

func listen(t *testing.T, rdb *redis.Client, channel string) *inbox {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := rdb.Subscribe(ctx, channel)
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	in := &inbox{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range sub.Channel() {
			var msg message
			if err := json.Unmarshal([]byte(m.Payload), &msg); err == nil {
				in.mu.Lock()
				in.msgs = append(in.msgs, msg)
				in.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { sub.Close(); cancel(); <-done })
	return in
}

// mark is where the messages of the next step start.
func (in *inbox) mark() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

// await waits up to 5 s for every wanted message after from.
func (in *inbox) await(t *testing.T, from int, want ...message) {
	t.Helper()
	var got []message
	deadline := time.Now().Add(5 * time.Second)
	for {
		in.mu.Lock()
		got = append([]message(nil), in.msgs[from:]...)
		in.mu.Unlock()
		missing := 0
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || (g.Kind == w.Kind && g.User == w.User && g.Org == w.Org &&
					g.Session == w.Session && g.APIKey == w.APIKey && g.V == 1 && g.ID != "")
			}
			if !found {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %v, got %v", want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInvalidation checks the messages the fixture's hooks publish, with
// sessions in the database and in secondary storage (where Better Auth
// fires no session delete hook).
func TestInvalidation(t *testing.T) {
	for _, store := range []string{"database", "secondary storage"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := testproc.RedisDB(t)
			env := []string{"INVALIDATION_REDIS_URL=" + testproc.RedisURL(), "INVALIDATION_CHANNEL=" + prefix + "inv",
				"INVALIDATION_REDIS_PREFIX=" + prefix}
			if store != "database" {
				env = append(env, "SECONDARY_STORAGE_REDIS_URL="+testproc.RedisURL(), "SECONDARY_STORAGE_PREFIX="+prefix+"ba:")
			}
			in := listen(t, rdb, prefix+"inv")
			f := newFixture(t, "plural", env...)
			testInvalidation(t, f, in, rdb, prefix, store != "database")
		})
	}
}

func testInvalidation(t *testing.T, f *fixture, in *inbox, rdb *redis.Client, prefix string, redisSessions bool) {
	ctx := context.Background()
	sessionID := func(t *testing.T, s *baclient.Session) string {
		t.Helper()
		info, err := f.GetSession(ctx, s)
		if err != nil || info == nil {
			t.Fatalf("get-session: %v", err)
		}
		return info.ID
	}
	signIn := func(t *testing.T, name string) *baclient.Session {
		t.Helper()
		s, err := f.SignIn(ctx, name+"@example.test", password(name))
		must(t, err)
		return s
	}
	sess := func(t *testing.T, s *baclient.Session) message {
		return message{Kind: "session", User: s.UserID, Session: sessionID(t, s)}
	}
	admin, err := f.SignUp(ctx, adminEmail, password("admin"), "admin")
	must(t, err)
	w := newWorld(t, f, "inv")
	f.signUp("sid")
	sid := signIn(t, "sid")
	sidMsg := sess(t, sid)

	steps := []struct {
		name string
		do   func(t *testing.T) []message // the messages it must publish
	}{
		{"set-active", func(t *testing.T) []message {
			want := sess(t, w.mia)
			must(t, f.SetActive(ctx, w.mia, w.org))
			return []message{want}
		}},
		{"sign-out", func(t *testing.T) []message {
			must(t, f.SignOut(ctx, sid))
			return []message{sidMsg}
		}},
		{"revoke-session", func(t *testing.T) []message {
			s := signIn(t, "sid")
			want := sess(t, s)
			must(t, f.RevokeSession(ctx, s, s.RawToken()))
			return []message{want}
		}},
		{"revoke-other-sessions", func(t *testing.T) []message {
			a, b := signIn(t, "sid"), signIn(t, "sid")
			want := sess(t, b)
			must(t, f.RevokeOtherSessions(ctx, a))
			return []message{want}
		}},
		{"revoke-sessions", func(t *testing.T) []message {
			a, b := signIn(t, "sid"), signIn(t, "sid")
			want := []message{sess(t, a), sess(t, b)}
			if redisSessions {
				want = append(want, message{Kind: "user", User: a.UserID})
			}
			must(t, f.RevokeSessions(ctx, a))
			return want
		}},
		{"set-role", func(t *testing.T) []message {
			must(t, f.SetRole(ctx, admin, w.adam.UserID, "user"))
			return []message{{Kind: "user", User: w.adam.UserID}}
		}},
		{"ban", func(t *testing.T) []message {
			s := signIn(t, "sid")
			want := []message{sess(t, s), {Kind: "user", User: s.UserID}}
			must(t, f.BanUser(ctx, admin, s.UserID, "spam"))
			must(t, f.UnbanUser(ctx, admin, s.UserID))
			return want
		}},
		{"impersonate", func(t *testing.T) []message {
			imp, err := f.Impersonate(ctx, admin, w.mia.UserID)
			must(t, err)
			want := sess(t, imp)
			_, err = f.StopImpersonating(ctx, imp)
			must(t, err)
			return []message{want}
		}},
		{"team membership", func(t *testing.T) []message {
			team, err := f.CreateTeam(ctx, w.olga, w.org, "Red")
			must(t, err)
			must(t, f.AddTeamMember(ctx, w.olga, w.org, team, w.mia.UserID))
			must(t, f.AddTeamMember(ctx, w.olga, w.org, team, w.adam.UserID))
			must(t, f.RemoveTeamMember(ctx, w.olga, w.org, team, w.mia.UserID))
			mark := in.mark()
			must(t, f.RemoveTeam(ctx, w.olga, w.org, team))
			in.await(t, mark, message{Kind: "member", User: w.adam.UserID, Org: w.org})
			return []message{{Kind: "member", User: w.mia.UserID, Org: w.org}}
		}},
		{"api key update and delete", func(t *testing.T) []message {
			k, err := f.CreateAPIKey(ctx, w.mia, baclient.NewAPIKey{})
			must(t, err)
			_, err = f.UpdateAPIKey(ctx, w.mia, baclient.APIKeyUpdate{KeyID: k.ID, Enabled: baclient.Ptr(false)})
			must(t, err)
			mark := in.mark()
			must(t, f.DeleteAPIKey(ctx, w.mia, baclient.UserKeys, k.ID))
			in.await(t, mark, message{Kind: "apikey", APIKey: k.ID})
			if n, err := rdb.Exists(ctx, prefix+"inv:k:"+k.ID).Result(); err != nil || n != 1 {
				t.Errorf("marker %sinv:k:%s: %d, %v", prefix, k.ID, n, err)
			}
			return []message{{Kind: "apikey", APIKey: k.ID}}
		}},
		{"leave", func(t *testing.T) []message {
			must(t, f.LeaveOrganization(ctx, w.mia, w.org))
			return []message{{Kind: "member", User: w.mia.UserID, Org: w.org}}
		}},
		{"delete user", func(t *testing.T) []message {
			d := f.signUp("dan")
			want := []message{sess(t, d), {Kind: "user", User: d.UserID}}
			must(t, f.DeleteUser(ctx, d, password("dan")))
			return want
		}},
		{"remove user", func(t *testing.T) []message {
			r := f.signUp("rob")
			want := []message{sess(t, r), {Kind: "user", User: r.UserID}}
			must(t, f.RemoveUser(ctx, admin, r.UserID))
			return want
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mark := in.mark()
			want := st.do(t)
			in.await(t, mark, want...)
			for _, m := range want {
				if m.Kind != "session" {
					continue
				}
				if n, err := rdb.Exists(ctx, prefix+"inv:s:"+m.Session).Result(); err != nil || n != 1 {
					t.Errorf("marker %sinv:s:%s: %d, %v", prefix, m.Session, n, err)
				}
			}
		})
	}

	if redisSessions {
		// The sessions lived only in Redis.
		if n := f.count(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'sessions'`); n != 0 {
			t.Errorf("a sessions table exists with secondary storage")
		}
		keys, err := rdb.Keys(ctx, prefix+"ba:*").Result()
		must(t, err)
		if !strings.Contains(strings.Join(keys, " "), prefix+"ba:active-sessions-") {
			t.Errorf("no active-sessions list among %v", keys)
		}
	}
}
