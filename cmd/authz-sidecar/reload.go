package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// reloader swaps in a changed policies.yaml. A file that does not load is
// rejected whole: the policy in force keeps serving, the failure is logged
// with every file:line problem, counted, and shown on /readyz.
type reloader struct {
	path     string
	states   stateBuilder
	supports func(*policy.Policy) error // the database can serve the policy
	engine   *authz.Engine
	log      *zap.Logger

	reloads *prometheus.CounterVec
	info    *prometheus.GaugeVec

	mu      sync.Mutex
	lastErr error // guarded by mu; nil after a successful (re)load
}

func newReloader(path string, states stateBuilder, supports func(*policy.Policy) error, engine *authz.Engine, log *zap.Logger, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{
		path: path, states: states, supports: supports, engine: engine, log: log.Named("policy"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_policy_reloads_total",
			Help: "Policy reload attempts by result (success, failure, unchanged).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authz_policy_info",
			Help: "The policy in force: 1 for its version (a hash of the file), 0 for earlier ones.",
		}, []string{"version"}),
	}
	for _, c := range []prometheus.Collector{r.reloads, r.info} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register policy metrics: %w", err)
		}
	}
	r.info.WithLabelValues(engine.Policy().Version).Set(1)
	return r, nil
}

// reload loads the file and swaps it in if it is valid and different.
func (r *reloader) reload() error {
	cur := r.engine.Policy()
	pol, err := policy.Load(r.path)
	var st authz.State
	if err == nil {
		err = restartNeeded(cur, pol)
	}
	if err == nil {
		err = r.supports(pol)
	}
	if err == nil {
		st, err = r.states.state(pol)
	}
	if err == nil && pol.Version != cur.Version {
		err = r.engine.SetState(st)
	}
	if err != nil {
		r.setErr(err)
		r.reloads.WithLabelValues("failure").Inc()
		r.log.Error("policy reload rejected; the previous policy stays in force",
			zap.String("version_in_force", cur.Version), zap.Error(err))
		return err
	}
	r.setErr(nil)
	if pol.Version == cur.Version {
		r.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	r.info.WithLabelValues(cur.Version).Set(0)
	r.info.WithLabelValues(pol.Version).Set(1)
	r.reloads.WithLabelValues("success").Inc()
	for _, w := range pol.Warnings {
		r.log.Warn("policy warning", zap.String("at", w.String()))
	}
	r.log.Info("policy reloaded", zap.String("from", cur.Version), zap.String("to", pol.Version),
		zap.Int("routes", len(pol.Routes)))
	return nil
}

// restartNeeded refuses changes that the running process was built for:
// the key set is bound to its URL (so a bad edit can never leave the
// sidecar without keys), and the database queries and session storage to
// the schema the process checked at start.
func restartNeeded(cur, pol *policy.Policy) error {
	switch {
	case pol.JWT.Enabled != cur.JWT.Enabled:
		return errors.New("the jwt section was added or removed; restart the sidecar to change key source")
	case pol.JWT.JWKSURL != cur.JWT.JWKSURL:
		return fmt.Errorf("jwt.jwks_url changed from %q to %q; restart the sidecar to change key source", cur.JWT.JWKSURL, pol.JWT.JWKSURL)
	case pol.Session.Storage != cur.Session.Storage:
		return errors.New("session.storage changed; restart the sidecar")
	case !reflect.DeepEqual(pol.Schema, cur.Schema):
		return errors.New("the schema section changed; restart the sidecar (its queries are checked and prepared at start)")
	}
	return nil
}

func (r *reloader) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// status reports the version in force and the last reload's error.
func (r *reloader) status() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.engine.Policy().Version, r.lastErr
}

// run reloads on every signal from hup and on changes to the file, until
// ctx ends. It watches the directory, not the file, because editors and
// Kubernetes ConfigMaps replace files by rename, which ends a watch on the
// file itself. Bursts of events are coalesced.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn("cannot watch the policy file; reload with SIGHUP", zap.Error(err))
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(r.path)); err != nil {
			r.log.Warn("cannot watch the policy directory; reload with SIGHUP", zap.Error(err))
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	const settle = 200 * time.Millisecond
	var timer *time.Timer
	var due <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP: reloading policy")
			_ = r.reload()
		case ev := <-events:
			if !r.concerns(ev) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(settle)
			} else {
				timer.Reset(settle)
			}
			due = timer.C
		case <-due:
			due = nil
			_ = r.reload()
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("policy watch error", zap.Error(err))
			}
		}
	}
}

// concerns reports whether ev may have changed the policy file: a write or
// rename of it, or (ConfigMap style) of anything in its directory that the
// file may be a symlink through.
func (r *reloader) concerns(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if filepath.Clean(ev.Name) == filepath.Clean(r.path) {
		return true
	}
	if app := r.engine.Policy().AppRoles; app != "" {
		if !filepath.IsAbs(app) {
			app = filepath.Join(filepath.Dir(r.path), app)
		}
		if filepath.Clean(ev.Name) == filepath.Clean(app) {
			return true
		}
	}
	fi, err := os.Lstat(r.path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
