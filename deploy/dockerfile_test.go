package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// No Docker engine runs where the tests run, so the Dockerfiles are checked
// by reading them: what the build copies, what the image runs and as whom.
// The build commands themselves are the ones `go build` runs anywhere.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// stage is one FROM ... section.
type stage struct {
	from, name string
	ins        []instruction
}

func parseDockerfile(src string) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	flush := func() error {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			return nil
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				return nil
			}
			return fmt.Errorf("%s before FROM", in.cmd)
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		return nil
	}
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, also between continuation lines
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// copyArgs splits a COPY into its flags, sources and destination.
func copyArgs(in instruction) (from string, srcs []string, dst string) {
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		if v, ok := strings.CutPrefix(f[0], "--from="); ok {
			from = v
		}
		f = f[1:]
	}
	if len(f) < 2 {
		return from, nil, ""
	}
	return from, f[:len(f)-1], f[len(f)-1]
}

func execForm(in instruction) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		return nil, fmt.Errorf("%s is not in exec (JSON) form: %w", in.cmd, err)
	}
	return v, nil
}

// nonRootUser reports whether a USER value names a numeric non-zero uid.
// Numeric, because Kubernetes' runAsNonRoot can only verify a numeric user.
func nonRootUser(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.Atoi(uid)
	return err == nil && n > 0
}

func flagValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// ignored reports whether a .dockerignore pattern excludes path (or a
// directory above it).
func ignored(patterns []string, path string) bool {
	path = strings.TrimSuffix(filepath.Clean(path), "/")
	for _, p := range patterns {
		p = strings.TrimSuffix(strings.TrimSpace(p), "/")
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		for q := path; q != "." && q != "/"; q = filepath.Dir(q) {
			if ok, _ := filepath.Match(p, q); ok {
				return true
			}
			if base, ok := strings.CutPrefix(p, "**/"); ok {
				if ok, _ := filepath.Match(base, filepath.Base(q)); ok {
					return true
				}
			}
		}
	}
	return false
}

// localPackageDirs lists, relative to root, the directories of the
// module's own packages the targets are built from.
func localPackageDirs(root string, targets []string) ([]string, error) {
	args := append([]string{"list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}"}, targets...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, d := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(abs, d)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, rel)
	}
	return dirs, nil
}

// checkSidecarDockerfile returns every way src (the sidecar's Dockerfile)
// breaks the rules, joined. composeCmd is the command docker-compose.yml
// gives the sidecar; dockerignore the .dockerignore text.
func checkSidecarDockerfile(src, dockerignore string, composeCmd, healthcheck []string, root string) error {
	stages, err := parseDockerfile(src)
	if err != nil {
		return err
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(stages) < 2 {
		return errors.New("not a multi-stage build: the toolchain would ship in the image")
	}
	build, final := stages[0], stages[len(stages)-1]
	ignore := strings.Split(dockerignore, "\n")

	// The build stage: static, reproducible, and given every package it compiles.
	var env, run strings.Builder
	for _, in := range build.all("ENV") {
		env.WriteString(in.args + " ")
	}
	for _, in := range build.all("RUN") {
		run.WriteString(in.args + " ")
	}
	if !strings.Contains(env.String(), "CGO_ENABLED=0") {
		bad("build stage does not set CGO_ENABLED=0: the binary would need libc, which the final image lacks")
	}
	builds := 0
	for _, part := range strings.Split(run.String(), "&&") {
		if !strings.Contains(part, "go build") {
			continue
		}
		builds++
		for _, flag := range []string{"-trimpath", `-ldflags "-s -w`} {
			if !strings.Contains(part, flag) {
				bad("%q does not build with %s", strings.TrimSpace(part), flag)
			}
		}
	}
	if builds == 0 {
		bad("build stage runs no go build")
	}
	var copied []string
	for _, in := range build.all("COPY") {
		from, srcs, _ := copyArgs(in)
		if from != "" {
			continue
		}
		for _, s := range srcs {
			if _, err := os.Stat(filepath.Join(root, s)); err != nil {
				bad("build stage copies %s: %v", s, err)
			}
			if ignored(ignore, s) {
				bad(".dockerignore excludes %s, which the build copies", s)
			}
			copied = append(copied, filepath.Clean(s))
		}
	}
	var targets []string
	for _, f := range strings.Fields(run.String()) {
		if strings.HasPrefix(f, "./") {
			targets = append(targets, f)
		}
	}
	if len(targets) == 0 {
		bad("build stage builds no ./package")
	} else if dirs, err := localPackageDirs(root, targets); err != nil {
		bad("%v", err)
	} else {
		for _, d := range dirs {
			if !slices.ContainsFunc(copied, func(c string) bool { return d == c || strings.HasPrefix(d, c+"/") }) {
				bad("build stage does not copy %s, which %v imports", d, targets)
			}
		}
	}

	// The final stage: non-root, the binary, the default policy, the probe.
	if u, ok := final.last("USER"); !ok || !nonRootUser(u.args) {
		bad("final stage USER %q: want a numeric non-root uid", u.args)
	}
	finalCopies := map[string]string{} // destination -> source
	for _, in := range final.all("COPY") {
		_, srcs, dst := copyArgs(in)
		if len(srcs) == 1 {
			finalCopies[dst] = srcs[0]
		}
	}
	ep, ok := final.last("ENTRYPOINT")
	entry, err := execForm(ep)
	switch {
	case !ok:
		bad("no ENTRYPOINT")
	case err != nil:
		bad("%v", err)
	case len(entry) != 1 || finalCopies[entry[0]] == "":
		bad("ENTRYPOINT %v is not the one binary the final stage copies", entry)
	}
	c, ok := final.last("CMD")
	cmd, err := execForm(c)
	switch {
	case !ok:
		bad("no CMD")
	case err != nil:
		bad("%v", err)
	default:
		if !slices.Equal(cmd, composeCmd) {
			bad("CMD %v differs from docker-compose.yml's sidecar command %v", cmd, composeCmd)
		}
		if p := flagValue(cmd, "--policies"); p == "" || filepath.Base(finalCopies[p]) != "policies.yaml" {
			bad("CMD --policies %q is not where the final stage copies policies.yaml", p)
		}
		var exposed []string
		for _, in := range final.all("EXPOSE") {
			exposed = append(exposed, strings.Fields(in.args)...)
		}
		for _, f := range []string{"--grpc-addr", "--http-addr"} {
			if _, port, err := net.SplitHostPort(flagValue(cmd, f)); err != nil || !slices.Contains(exposed, port) {
				bad("CMD %s %q: its port is not EXPOSEd (%v)", f, flagValue(cmd, f), exposed)
			}
		}
	}
	if len(healthcheck) < 2 || finalCopies[healthcheck[1]] == "" {
		bad("docker-compose.yml's healthcheck %v does not run a binary the final stage copies", healthcheck)
	}
	return errors.Join(errs...)
}

// checkBetterAuthDockerfile checks deploy/betterauth.Dockerfile.
func checkBetterAuthDockerfile(src, dockerignore, root string) error {
	stages, err := parseDockerfile(src)
	if err != nil {
		return err
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	final := stages[len(stages)-1]
	ignore := strings.Split(dockerignore, "\n")
	copied := map[string]bool{}
	for _, in := range final.all("COPY") {
		_, srcs, _ := copyArgs(in)
		for _, s := range srcs {
			copied[s] = true
			if _, err := os.Stat(filepath.Join(root, s)); err != nil {
				bad("copies %s: %v", s, err)
			}
			if ignored(ignore, s) {
				bad(".dockerignore excludes %s, which the build copies", s)
			}
		}
	}
	// What npm ci and server.ts need: the npm settings (legacy-peer-deps
	// for the api-key plugin) and every local module server.ts imports.
	needed := []string{"test/betterauth/.npmrc"}
	server, err := os.ReadFile(filepath.Join(root, "test/betterauth/server.ts"))
	if err != nil {
		return err
	}
	for _, m := range regexp.MustCompile(`from "\./([^"]+)"`).FindAllStringSubmatch(string(server), -1) {
		needed = append(needed, "test/betterauth/"+m[1])
	}
	for _, n := range needed {
		if !copied[n] {
			bad("does not copy %s, which the Better Auth app needs", n)
		}
	}
	if u, ok := final.last("USER"); !ok || u.args == "root" || strings.HasPrefix(u.args, "0") {
		bad("Better Auth runs as root (USER %q)", u.args)
	}
	c, ok := final.last("CMD")
	cmd, err := execForm(c)
	if !ok || err != nil || !slices.Contains(cmd, "server.ts") {
		bad("CMD %v does not run server.ts (%v)", cmd, err)
	}
	var env strings.Builder
	for _, in := range final.all("ENV") {
		env.WriteString(in.args + " ")
	}
	if !strings.Contains(env.String(), "MIGRATE=1") {
		bad("MIGRATE=1 is not set: Better Auth would serve without its tables")
	}
	return errors.Join(errs...)
}

type dockerFixture struct {
	sidecar, betterauth, ignore string
	composeCmd, healthcheck     []string
}

func loadDockerFixture(t *testing.T) dockerFixture {
	t.Helper()
	c := loadCompose(t)
	s := c.Services[sidecarService]
	if s.Healthcheck == nil {
		t.Fatalf("service %s has no healthcheck", sidecarService)
	}
	return dockerFixture{
		sidecar:     string(readFile(t, sidecarImage)),
		betterauth:  string(readFile(t, betterAuthImg)),
		ignore:      string(readFile(t, filepath.Join(repoRoot, ".dockerignore"))),
		composeCmd:  s.Command,
		healthcheck: s.Healthcheck.Test,
	}
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	f := loadDockerFixture(t)
	if err := checkSidecarDockerfile(f.sidecar, f.ignore, f.composeCmd, f.healthcheck, repoRoot); err != nil {
		t.Errorf("Dockerfile: %v", err)
	}
	if err := checkBetterAuthDockerfile(f.betterauth, f.ignore, repoRoot); err != nil {
		t.Errorf("%s: %v", betterAuthImg, err)
	}
}

// TestDockerfilesCatchRegressions proves each check can fail.
func TestDockerfilesCatchRegressions(t *testing.T) {
	t.Parallel()
	f := loadDockerFixture(t)
	tests := []struct {
		name       string
		betterauth bool // mutate betterauth.Dockerfile instead of Dockerfile
		ignore     bool // mutate .dockerignore instead
		old, new   string
		want       string
	}{
		{name: "root user", old: "USER 65532:65532", new: "USER 0:0", want: "non-root"},
		{name: "named user", old: "USER 65532:65532", new: "USER nonroot", want: "numeric"},
		{name: "no user", old: "USER 65532:65532\n", new: "", want: "USER"},
		{name: "cgo", old: "ENV CGO_ENABLED=0", new: "ENV CGO_ENABLED=1", want: "CGO_ENABLED"},
		{name: "not trimmed", old: "-trimpath -ldflags \"-s -w -X main.buildVersion=${VERSION}\" -o /out/authz-sidecar", new: "-o /out/authz-sidecar", want: "does not build with -trimpath"},
		{name: "package not copied", old: "COPY internal/ internal/\n", new: "", want: "does not copy internal/"},
		{name: "source missing", old: "COPY policies.yaml ./", new: "COPY policy.yaml ./", want: "policy.yaml"},
		{name: "ignored source", ignore: true, old: "bin\n", new: "bin\ninternal\n", want: ".dockerignore excludes internal/"},
		{name: "CMD not the compose command", old: `"--grpc-addr", "0.0.0.0:9191"`, new: `"--grpc-addr", "0.0.0.0:9999"`, want: "differs"},
		{name: "shell-form CMD", old: `CMD ["serve", "--grpc-addr", "0.0.0.0:9191", "--http-addr", "0.0.0.0:9192", "--policies", "/etc/authz-sidecar/policies.yaml"]`,
			new: "CMD serve", want: "exec (JSON) form"},
		{name: "policies elsewhere", old: "COPY policies.yaml /etc/authz-sidecar/policies.yaml", new: "COPY policies.yaml /etc/policies.yaml", want: "--policies"},
		{name: "probe not shipped", old: "COPY --from=build /out/httpprobe /httpprobe\n", new: "", want: "healthcheck"},
		{name: "port not exposed", old: "EXPOSE 9191 9192", new: "EXPOSE 9191", want: "EXPOSEd"},
		{name: "single stage", old: "FROM gcr.io/distroless/static-debian12:nonroot\n", new: "", want: "multi-stage"},
		{name: "betterauth as root", betterauth: true, old: "USER node", new: "USER root", want: "root"},
		{name: "betterauth without migrations", betterauth: true, old: "    MIGRATE=1", new: "    MIGRATE=0", want: "MIGRATE=1"},
		{name: "betterauth source missing", betterauth: true, old: "COPY test/betterauth/server.ts test/betterauth/access.ts ./", new: "COPY test/betterauth/main.ts test/betterauth/access.ts ./", want: "main.ts"},
		{name: "betterauth module not copied", betterauth: true, old: "COPY test/betterauth/server.ts test/betterauth/access.ts ./", new: "COPY test/betterauth/server.ts ./", want: "does not copy test/betterauth/access.ts"},
		{name: "betterauth npm settings not copied", betterauth: true, old: " test/betterauth/.npmrc ./", new: " ./", want: "does not copy test/betterauth/.npmrc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sidecar, betterauth, ignore := f.sidecar, f.betterauth, f.ignore
			target := &sidecar
			switch {
			case tt.betterauth:
				target = &betterauth
			case tt.ignore:
				target = &ignore
			}
			if n := strings.Count(*target, tt.old); n != 1 {
				t.Fatalf("%q occurs %d times, want 1", tt.old, n)
			}
			*target = strings.Replace(*target, tt.old, tt.new, 1)
			var err error
			if tt.betterauth {
				err = checkBetterAuthDockerfile(betterauth, ignore, repoRoot)
			} else {
				err = checkSidecarDockerfile(sidecar, ignore, f.composeCmd, f.healthcheck, repoRoot)
			}
			if err == nil {
				t.Fatal("check passed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

func TestIgnored(t *testing.T) {
	t.Parallel()
	patterns := []string{"# comment", ".git", "bin", "**/node_modules", "*.pem", "!keep.pem"}
	for path, want := range map[string]bool{
		".git": true, ".git/config": true, "bin/authz-sidecar": true, "test/betterauth/node_modules": true,
		"test/betterauth/node_modules/x/y.js": true, "key.pem": true, "internal/": false, "cmd/authz-sidecar": false,
		"policies.yaml": false, "binary": false,
	} {
		if got := ignored(patterns, path); got != want {
			t.Errorf("ignored(%q) = %v, want %v", path, got, want)
		}
	}
}
