package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// -update rewrites the generated blocks of docs/configuration.md from the
// commands' --help (make docs).
var update = flag.Bool("update", false, "rewrite docs/configuration.md's generated blocks")

// commands are the subcommands; each documents itself with --help.
var commands = []string{"serve", "validate", "test", "explain", "envoy-routes", "version"}

// Every subcommand prints its --help on stdout and exits 0; a wrong flag
// prints the error and the usage on stderr and exits 2.
func TestHelpConventions(t *testing.T) {
	for _, cmd := range commands {
		t.Run(cmd, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, &stdout, &stderr)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("--help: err = %v, want flag.ErrHelp (exit 0)", err)
			}
			if !strings.HasPrefix(stdout.String(), "Usage: authz-sidecar "+cmd) || stderr.Len() != 0 {
				t.Errorf("--help: stdout %q..., stderr %q; want the usage on stdout only", firstLine(stdout.String()), stderr.String())
			}

			stdout.Reset()
			stderr.Reset()
			err = run(context.Background(), []string{cmd, "--no-such-flag"}, func(string) string { return "" }, &stdout, &stderr)
			if !errors.Is(err, errUsage) {
				t.Errorf("bad flag: err = %v, want errUsage (exit 2)", err)
			}
			if stdout.Len() != 0 || !strings.Contains(stderr.String(), "flag provided but not defined: -no-such-flag") ||
				!strings.Contains(stderr.String(), "Usage: authz-sidecar "+cmd) {
				t.Errorf("bad flag: stdout %q, stderr %q; want the error and the usage on stderr only", stdout.String(), stderr.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &stdout, &stderr); err != nil ||
		stderr.Len() != 0 || !strings.Contains(stdout.String(), "authz-sidecar version") {
		t.Errorf("top-level --help: err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b := readBuildInfo()
	if !strings.HasPrefix(stdout.String(), "authz-sidecar "+b.Version+"\n") || !strings.Contains(stdout.String(), "go:      go1.") {
		t.Errorf("version printed %q", stdout.String())
	}
	buildVersion = "v9.9.9-test"
	t.Cleanup(func() { buildVersion = "" })
	if got := readBuildInfo().Version; got != "v9.9.9-test" {
		t.Errorf("-X main.buildVersion is not the version: %q", got)
	}
}

// generatedBlock matches a block of docs/configuration.md written from a
// command's --help: the marker comment, then a fenced text block.
var generatedBlock = regexp.MustCompile("(?s)<!-- generated: authz-sidecar ([a-z-]+) --help -->\n```text\n(.*?)```\n")

// docs/configuration.md carries every command's --help verbatim, so the
// flags have one source (the code) and the page cannot drift from it.
func TestConfigurationDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var failed bool
	out := generatedBlock.ReplaceAllStringFunc(string(doc), func(block string) string {
		m := generatedBlock.FindStringSubmatch(block)
		cmd := m[1]
		seen[cmd] = true
		var help bytes.Buffer
		run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, &help, &bytes.Buffer{})
		if m[2] != help.String() && !*update {
			failed = true
			t.Errorf("docs/configuration.md: the block of %q differs from `authz-sidecar %s --help`; run make docs", cmd, cmd)
		}
		return "<!-- generated: authz-sidecar " + cmd + " --help -->\n```text\n" + help.String() + "```\n"
	})
	for _, cmd := range commands {
		if !seen[cmd] {
			t.Errorf("docs/configuration.md has no generated block for %q", cmd)
		}
	}
	if *update && !failed && out != string(doc) {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// docs/metrics.md lists every metric the sidecar registers, with its
// labels, and nothing else: the metric options in the source are parsed
// and compared with the table.
func TestMetricsDoc(t *testing.T) {
	code := metricsInSource(t, filepath.Join("..", ".."), "cmd", "internal")
	if len(code) < 10 {
		t.Fatalf("found only %d metrics in the source; the parser is lost", len(code))
	}
	doc := metricsInDoc(t, filepath.Join("..", "..", "docs", "metrics.md"))
	for name, labels := range code {
		docLabels, ok := doc[name]
		if !ok {
			t.Errorf("docs/metrics.md does not list %s", name)
			continue
		}
		if labels != nil && !slices.Equal(labels, docLabels) {
			t.Errorf("%s: labels %v in the source, %v in docs/metrics.md", name, labels, docLabels)
		}
	}
	for name := range doc {
		if _, ok := code[name]; !ok {
			t.Errorf("docs/metrics.md lists %s, which nothing registers", name)
		}
	}
}

// metricsInSource finds the prometheus.New* calls of the non-test files
// under dirs and returns metric name → sorted label names (nil when the
// labels are not a literal list).
func metricsInSource(t *testing.T, root string, dirs ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			// Label sets built before the options: labels := prometheus.Labels{...}.
			labelVars := map[string][]string{}
			ast.Inspect(f, func(n ast.Node) bool {
				if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 {
					if id, ok := as.Lhs[0].(*ast.Ident); ok {
						if keys, ok := labelKeys(as.Rhs[0]); ok {
							labelVars[id.Name] = keys
						}
					}
				}
				return true
			})
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" || !strings.HasPrefix(sel.Sel.Name, "New") {
					return true
				}
				name, labels := metricOpts(call.Args[0], labelVars)
				if name == "" {
					return true
				}
				if len(call.Args) > 1 {
					l, ok := stringList(call.Args[1])
					if !ok {
						labels = nil
					} else if labels != nil {
						labels = append(labels, l...)
					}
				}
				slices.Sort(labels)
				found[name] = labels
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// metricOpts reads Name and the ConstLabels keys of a prometheus.*Opts
// literal (or its address); labels is nil when they are not known.
func metricOpts(e ast.Expr, labelVars map[string][]string) (name string, labels []string) {
	if u, ok := e.(*ast.UnaryExpr); ok {
		e = u.X
	}
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return "", nil
	}
	labels = []string{}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, _ := kv.Key.(*ast.Ident)
		switch {
		case key == nil:
		case key.Name == "Name":
			if b, ok := kv.Value.(*ast.BasicLit); ok {
				name, _ = strconv.Unquote(b.Value)
			}
		case key.Name == "ConstLabels":
			keys, ok := labelKeys(kv.Value)
			if id, isVar := kv.Value.(*ast.Ident); isVar {
				keys, ok = labelVars[id.Name]
			}
			if !ok {
				return name, nil
			}
			labels = append(labels, keys...)
		}
	}
	return name, labels
}

// labelKeys reads the keys of a prometheus.Labels{"k": v, ...} literal.
func labelKeys(e ast.Expr) ([]string, bool) {
	m, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	if sel, ok := m.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Labels" {
		return nil, false
	}
	var keys []string
	for _, el := range m.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			return nil, false
		}
		b, ok := kv.Key.(*ast.BasicLit)
		if !ok {
			return nil, false
		}
		k, _ := strconv.Unquote(b.Value)
		keys = append(keys, k)
	}
	return keys, true
}

func stringList(e ast.Expr) ([]string, bool) {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	var out []string
	for _, el := range lit.Elts {
		b, ok := el.(*ast.BasicLit)
		if !ok {
			return nil, false
		}
		s, _ := strconv.Unquote(b.Value)
		out = append(out, s)
	}
	return out, true
}

// metricsInDoc reads the table rows "| `name` | `label` (values), ... | what |"
// of docs/metrics.md: metric name → sorted label names.
func metricsInDoc(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ticked := regexp.MustCompile("`([a-z_]+)`")
	doc := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`authz_") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		labels := []string{}
		for _, m := range ticked.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		slices.Sort(labels)
		if _, dup := doc[name]; dup {
			t.Errorf("docs/metrics.md lists %s twice", name)
		}
		doc[name] = labels
	}
	return doc
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Every relative link of the README and docs/ names a file that exists
// and, with a #fragment, a heading in it (GitHub's anchors), so the map
// does not point nowhere after a page or section moves.
func TestDocLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"), filepath.Join(root, "test", "betterauth", "README.md"),
		filepath.Join(root, "envoy", "istio", "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := stripCode(string(b))
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			rel, _ := filepath.Rel(root, page)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %q: no such file", rel, target)
				continue
			}
			if frag == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			doc, _ := os.ReadFile(path)
			if !slices.Contains(anchors(string(doc)), frag) {
				t.Errorf("%s: link %q: no heading with that anchor", rel, target)
			}
		}
	}
}

// anchors lists the GitHub anchors of a Markdown page's headings.
func anchors(doc string) []string {
	var out []string
	seen := map[string]int{}
	for _, line := range strings.Split(stripCode(doc), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, a+"-"+strconv.Itoa(n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

// stripCode removes fenced code blocks, whose "#" lines are not headings
// and whose brackets are not links.
func stripCode(doc string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
