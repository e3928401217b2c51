package invalidate

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		wantErr  bool
		kind     Kind
		subjects []Subject
		all      bool
	}{
		{name: "member", in: `{"v":1,"id":"a","kind":"member","user":"u","org":"o"}`, kind: KindMember, subjects: []Subject{"u:u"}},
		{name: "user", in: `{"v":1,"id":"a","kind":"user","user":"u"}`, kind: KindUser, subjects: []Subject{"u:u"}},
		{name: "org with slugs", in: `{"v":1,"id":"a","kind":"org","org":"o","slugs":["s1","s2"]}`, kind: KindOrg, subjects: []Subject{"o:o", "o:s1", "o:s2"}},
		{name: "role", in: `{"v":1,"id":"a","kind":"role","org":"o","role":"r"}`, kind: KindRole, subjects: []Subject{"o:o"}},
		// As the fixture app publishes them (test/betterauth/server.ts).
		{name: "session", in: `{"v":1,"id":"a","kind":"session","user":"u","session":"s","src":"better-auth","at":1795857954779}`, kind: KindSession, subjects: []Subject{"s:s"}},
		{name: "session without user", in: `{"v":1,"id":"a","kind":"session","session":"s"}`, kind: KindSession, subjects: []Subject{"s:s"}},
		{name: "apikey", in: `{"v":1,"id":"a","kind":"apikey","apikey":"k"}`, kind: KindAPIKey, subjects: []Subject{"k:k"}},
		{name: "all", in: `{"v":1,"id":"a","kind":"all"}`, kind: KindAll, all: true},
		{name: "unknown fields are ignored", in: `{"v":1,"id":"a","kind":"user","user":"u","extra":{"x":1}}`, kind: KindUser, subjects: []Subject{"u:u"}},
		// Fail safe: a message we cannot fully act on invalidates everything.
		{name: "newer version", in: `{"v":2,"id":"a","kind":"user","user":"u"}`, kind: KindAll, all: true},
		{name: "unknown kind", in: `{"v":1,"id":"a","kind":"team","org":"o"}`, kind: KindAll, all: true},
		{name: "member without org", in: `{"v":1,"id":"a","kind":"member","user":"u"}`, kind: KindAll, all: true},
		{name: "user without id", in: `{"v":1,"id":"a","kind":"user"}`, kind: KindAll, all: true},
		{name: "role without org", in: `{"v":1,"id":"a","kind":"role","role":"r"}`, kind: KindAll, all: true},
		{name: "session without id", in: `{"v":1,"id":"a","kind":"session","user":"u"}`, kind: KindAll, all: true},
		{name: "apikey without id", in: `{"v":1,"id":"a","kind":"apikey"}`, kind: KindAll, all: true},
		{name: "not JSON", in: `hello`, wantErr: true},
		{name: "no version", in: `{"id":"a","kind":"all"}`, wantErr: true},
		{name: "no id", in: `{"v":1,"kind":"all"}`, wantErr: true},
		{name: "JSON array", in: `[1]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Parse([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != tt.kind {
				t.Errorf("kind = %q, want %q", m.Kind, tt.kind)
			}
			subjects, all := m.Subjects()
			if !slices.Equal(subjects, tt.subjects) || all != tt.all {
				t.Errorf("subjects = %v %v, want %v %v", subjects, all, tt.subjects, tt.all)
			}
		})
	}
}

// The subjects' spelling is shared with publishers outside the sidecar
// (their marker keys are "<prefix>inv:<subject>"): it must not change.
func TestSubjectSpelling(t *testing.T) {
	t.Parallel()
	for got, want := range map[Subject]string{
		UserSubject("u1"): "u:u1", OrgSubject("acme"): "o:acme", SessionSubject("s1"): "s:s1", APIKeySubject("k1"): "k:k1",
	} {
		if string(got) != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
}

// fakes record what the Service does.
type fakeLocal struct {
	mu           sync.Mutex
	subjects     []Subject
	all, flushes int
}

func (f *fakeLocal) Invalidate(s Subject) {
	f.mu.Lock()
	f.subjects = append(f.subjects, s)
	f.mu.Unlock()
}
func (f *fakeLocal) All()        { f.mu.Lock(); f.all++; f.mu.Unlock() }
func (f *fakeLocal) FlushLocal() { f.mu.Lock(); f.flushes++; f.mu.Unlock() }
func (f *fakeLocal) snapshot() fakeLocal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeLocal{subjects: slices.Clone(f.subjects), all: f.all, flushes: f.flushes}
}

type fakeMarkers struct {
	mu       sync.Mutex
	fail     atomic.Bool
	attempts atomic.Int64 // calls, failed ones included
	marks    []string
}

func (f *fakeMarkers) Mark(_ context.Context, subjects []Subject, all bool) error {
	f.attempts.Add(1)
	if f.fail.Load() {
		return errors.New("redis down")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range subjects {
		f.marks = append(f.marks, string(s))
	}
	if all {
		f.marks = append(f.marks, "all")
	}
	return nil
}

func (f *fakeMarkers) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.marks)
}

// fakeBus echoes what is published back to the subscriber, like Redis.
type fakeBus struct {
	fail      atomic.Bool
	in        chan []byte
	mu        sync.Mutex
	published []Message
}

func newFakeBus() *fakeBus { return &fakeBus{in: make(chan []byte, 100)} }

func (f *fakeBus) Publish(_ context.Context, b []byte) error {
	if f.fail.Load() {
		return errors.New("redis down")
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	f.mu.Lock()
	f.published = append(f.published, m)
	f.mu.Unlock()
	f.in <- b
	return nil
}

func (f *fakeBus) Subscribe(ctx context.Context, onSubscribed func(), onMessage func([]byte)) {
	onSubscribed()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-f.in:
			if b == nil {
				onSubscribed() // a reconnection
				continue
			}
			onMessage(b)
		}
	}
}

func (f *fakeBus) list() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.published)
}

// fakeFeed hands notifications and reconnections to the Service.
type fakeFeed struct{ in chan string }

func (f *fakeFeed) Listen(ctx context.Context, onConnected func(), onNotify func(string)) {
	onConnected()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-f.in:
			if p == "" {
				onConnected()
				continue
			}
			onNotify(p)
		}
	}
}

type harness struct {
	svc     *Service
	local   *fakeLocal
	markers *fakeMarkers
	bus     *fakeBus
	feed    *fakeFeed
	reg     *prometheus.Registry
}

func start(t *testing.T, withFeed bool) *harness {
	t.Helper()
	h := &harness{local: &fakeLocal{}, markers: &fakeMarkers{}, bus: newFakeBus(), reg: prometheus.NewRegistry()}
	deps := Deps{Local: h.local, Markers: h.markers, Bus: h.bus}
	if withFeed {
		h.feed = &fakeFeed{in: make(chan string, 100)}
		deps.Feed = h.feed
	}
	svc, err := New(Config{Source: "test", RetryEvery: 10 * time.Millisecond}, deps, zap.NewNop(), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// eventually polls cond for up to 30 s: a failure bound far above what
// anything takes on a loaded machine, never what a test asserts.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestServiceAppliesBusMessagesOnce(t *testing.T) {
	t.Parallel()
	h := start(t, false)
	eventually(t, "the first subscription flush", func() bool { return h.local.snapshot().flushes == 1 })
	msg := `{"v":1,"id":"m1","kind":"member","user":"u1","org":"o1"}`
	h.bus.in <- []byte(msg)
	h.bus.in <- []byte(msg) // a duplicate (two republishers, or our own echo)
	h.bus.in <- []byte(`{"v":1,"id":"m2","kind":"role","org":"o1","role":"r"}`)
	h.bus.in <- []byte(`{"v":1,"id":"m3","kind":"session","user":"u1","session":"s1"}`)
	h.bus.in <- []byte(`{"v":1,"id":"m4","kind":"apikey","apikey":"k1"}`)
	h.bus.in <- []byte(`garbage`)
	h.bus.in <- nil // the subscription was re-established
	eventually(t, "the messages", func() bool { return h.local.snapshot().flushes == 2 })
	got := h.local.snapshot()
	want := []Subject{"u:u1", "o:o1", "s:s1", "k:k1"}
	if !slices.Equal(got.subjects, want) || got.all != 0 {
		t.Errorf("applied %v all %d; want %v 0", got.subjects, got.all, want)
	}
	if m := h.markers.list(); !slices.Equal(m, []string{"u:u1", "o:o1", "s:s1", "k:k1"}) {
		t.Errorf("markers = %v, want receivers to mark what they applied", m)
	}
	if n := len(h.bus.list()); n != 0 {
		t.Errorf("a bus message was republished %d times; only feed messages are", n)
	}
	for kind, want := range map[string]float64{"member": 1, "role": 1, "session": 1, "apikey": 1, "invalid": 1} {
		if got := testutil.ToFloat64(h.svc.m.messages.WithLabelValues(kind)); got != want {
			t.Errorf("invalidations_total{kind=%s} = %v, want %v", kind, got, want)
		}
	}
	if got := testutil.ToFloat64(h.svc.m.duplicates); got != 1 {
		t.Errorf("duplicates = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.svc.m.flushes.WithLabelValues("redis_subscribe")); got != 2 {
		t.Errorf("flushes{redis_subscribe} = %v, want 2", got)
	}
}

// A database notification is applied here, marked, and republished once;
// its echo from the bus is not applied again. Each (re)connection of the
// feed invalidates everything, everywhere.
func TestServiceRelaysFeed(t *testing.T) {
	t.Parallel()
	h := start(t, true)
	eventually(t, "the first LISTEN's catch-up", func() bool { return len(h.bus.list()) == 1 })
	if m := h.bus.list()[0]; m.Kind != KindAll || m.Src != "test" {
		t.Errorf("on LISTEN published %+v, want an all message", m)
	}
	h.feed.in <- `{"v":1,"id":"n1","kind":"user","user":"u1","src":"pg"}`
	eventually(t, "the republish", func() bool { return len(h.bus.list()) == 2 })
	if m := h.bus.list()[1]; m.ID != "n1" || m.Kind != KindUser || m.User != "u1" {
		t.Errorf("republished %+v", m)
	}
	// Let the echoes arrive, then check nothing was applied twice.
	eventually(t, "the echoes", func() bool { return testutil.ToFloat64(h.svc.m.duplicates) == 2 })
	got := h.local.snapshot()
	if !slices.Equal(got.subjects, []Subject{"u:u1"}) || got.all != 1 {
		t.Errorf("applied %v all %d; want [u:u1] 1", got.subjects, got.all)
	}
	if m := h.markers.list(); !slices.Equal(m, []string{"all", "u:u1"}) {
		t.Errorf("markers = %v", m)
	}
	if got := testutil.ToFloat64(h.svc.m.flushes.WithLabelValues("pg_listen")); got != 1 {
		t.Errorf("flushes{pg_listen} = %v, want 1", got)
	}
	// An undecodable notification: our triggers wrote it, so it meant
	// something: everything is invalidated.
	h.feed.in <- `{"v":1,`
	eventually(t, "the fail-safe", func() bool { return h.local.snapshot().all == 2 })
}

// When Redis is down, a notification is still applied locally; once Redis
// is back, the others (who missed it, markers included) are told to forget
// everything.
func TestServiceCatchesUpAfterFailedRelay(t *testing.T) {
	t.Parallel()
	h := start(t, true)
	eventually(t, "the first LISTEN's catch-up", func() bool { return len(h.bus.list()) == 1 })
	h.bus.fail.Store(true)
	h.markers.fail.Store(true)
	h.feed.in <- `{"v":1,"id":"n1","kind":"member","user":"u1","org":"o1"}`
	eventually(t, "the local application", func() bool { return len(h.local.snapshot().subjects) == 1 })
	// The relay's mark and two retries fail meanwhile.
	eventually(t, "two failed retries", func() bool { return h.markers.attempts.Load() >= 4 })
	if n := len(h.bus.list()); n != 1 {
		t.Fatalf("published %d messages while Redis was down", n)
	}
	h.markers.fail.Store(false)
	h.bus.fail.Store(false)
	eventually(t, "the catch-up", func() bool { return len(h.bus.list()) == 2 })
	if m := h.bus.list()[1]; m.Kind != KindAll {
		t.Errorf("catch-up = %+v, want an all message", m)
	}
	if m := h.markers.list(); !slices.Contains(m[1:], "all") {
		t.Errorf("markers = %v, want an all marker with the catch-up", m)
	}
	// Retries publish only while a catch-up is owed: once it is cleared,
	// none follows.
	eventually(t, "the catch-up settled", func() bool { return !h.svc.needAll.Load() })
	if n := len(h.bus.list()); n != 2 {
		t.Errorf("published %d messages; the catch-up must be sent once", n)
	}
	if got := testutil.ToFloat64(h.svc.m.errors.WithLabelValues("publish")); got < 1 {
		t.Errorf("errors{publish} = %v", got)
	}
}

func TestRememberForgetsOldest(t *testing.T) {
	t.Parallel()
	svc, err := New(Config{Remember: 2}, Deps{Local: &fakeLocal{}}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		id   string
		want bool
	}{{"a", true}, {"a", false}, {"b", true}, {"c", true}, {"a", true}, {"c", false}} {
		if got := svc.remember(c.id); got != c.want {
			t.Errorf("step %d remember(%s) = %v, want %v", i, c.id, got, c.want)
		}
	}
}

func TestNewNeedsLocal(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}, Deps{}, zap.NewNop(), prometheus.NewRegistry()); err == nil {
		t.Error("New without a local store succeeded")
	}
}

// orderLog records, in order, what the barrier and the local store are
// told.
type orderLog struct {
	mu     sync.Mutex
	events []string
	grew   chan struct{} // receives after each event
}

func (o *orderLog) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
	select {
	case o.grew <- struct{}{}:
	default:
	}
}

func (o *orderLog) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events)
}

type orderBarrier struct{ *orderLog }

func (b orderBarrier) Raise() { b.add("raise") }

type orderLocal struct{ *orderLog }

func (l orderLocal) Invalidate(s Subject) { l.add("invalidate " + string(s)) }
func (l orderLocal) All()                 { l.add("all") }
func (l orderLocal) FlushLocal()          { l.add("flush") }

// A source that lags (a hot standby) is fenced before every invalidation
// or flush reaches the caches, so that the reload it causes cannot read
// the old row.
func TestBarrierRaisedBeforeInvalidations(t *testing.T) {
	t.Parallel()
	log := &orderLog{grew: make(chan struct{}, 1)}
	bus := newFakeBus()
	s, err := New(Config{}, Deps{Local: orderLocal{log}, Bus: bus, Barrier: orderBarrier{log}}, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	bus.in <- []byte(`{"v":1,"id":"m1","kind":"member","user":"u","org":"o"}`)
	bus.in <- []byte(`{"v":1,"id":"m2","kind":"all"}`)
	want := []string{"raise", "flush", "raise", "invalidate u:u", "raise", "all"}
	deadline := time.After(time.Minute)
	for len(log.list()) < len(want) {
		select {
		case <-log.grew:
		case <-deadline:
			t.Fatalf("events %v, want %v", log.list(), want)
		}
	}
	if got := log.list(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}
