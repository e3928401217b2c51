package authz

import (
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
)

// operationsDoc holds the deny reasons table operators read.
const operationsDoc = "../../docs/operations.md"

// TestDenyReasonsDoc keeps the "Deny reasons" table of docs/operations.md
// and the code in step: every reason the module declares (a constant of
// type Reason here, or authz.Reason in another package, such as HTTP mode's
// refusals) has exactly one row, every row names a declared reason, and
// each row's status is the one the code answers with.
//
// There is no Reason→status function to ask: a reason gets its Code where
// a decision is made. So the status comes from the code itself, read with
// go/ast: the "// 401: ..." headings over decision.go's groups of
// reasons, and every place a reason is paired with a Code (a failure or
// Decision literal, or a call of a helper that sets one Code, like deny or
// allow); Code.HTTPStatus turns the Code into the status. All of them must
// agree, so a reason answered with two statuses fails here too.
func TestDenyReasonsDoc(t *testing.T) {
	t.Parallel()
	files := parseModule(t, "../..")
	declared := declaredReasons(files)
	if len(declared) < 30 {
		t.Fatalf("found %d reasons in the module; the parser lost them", len(declared))
	}
	statuses := reasonStatuses(t, files, declared)
	doc := docReasons(t, operationsDoc)

	names := make([]string, 0, len(declared))
	for _, r := range declared {
		names = append(names, r.value)
	}
	slices.Sort(names)
	for _, value := range names {
		want, ok := statuses[value]
		if !ok {
			t.Errorf("reason %q: no heading or Code in the code says its status", value)
			continue
		}
		got, ok := doc[value]
		switch {
		case !ok:
			t.Errorf("reason %q (status %d) is missing from the table in %s", value, want, operationsDoc)
		case got != want:
			t.Errorf("reason %q: the table in %s says %d, the code answers %d", value, operationsDoc, got, want)
		}
	}
	for value := range doc {
		if !slices.Contains(names, value) {
			t.Errorf("the table in %s names %q, which the code does not declare", operationsDoc, value)
		}
	}
}

// goFile is one parsed non-test file and the package directory it is in.
type goFile struct {
	dir  string
	file *ast.File
}

// parseModule parses every non-test .go file under root, comments kept.
func parseModule(t *testing.T, root string) []goFile {
	t.Helper()
	fset := token.NewFileSet()
	var files []goFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files = append(files, goFile{dir: filepath.Dir(path), file: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// reasonDecl is one declared reason constant.
type reasonDecl struct {
	value string
	// heading is the status of the "// 401: ..." group it is declared in
	// (0: none).
	heading int
}

// headingRE matches decision.go's group headings, "// 403: the caller.".
var headingRE = regexp.MustCompile(`(?m)^([1-5][0-9][0-9]): `)

// declaredReasons maps each package directory and constant name to the
// reason it declares.
func declaredReasons(files []goFile) map[string]reasonDecl {
	out := map[string]reasonDecl{}
	for _, f := range files {
		for _, decl := range f.file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			heading := 0
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Doc != nil {
					if m := headingRE.FindStringSubmatch(vs.Doc.Text()); m != nil {
						heading, _ = strconv.Atoi(m[1])
					}
				}
				if !isReasonType(vs.Type) {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					value, err := strconv.Unquote(lit.Value)
					if err != nil {
						continue
					}
					out[key(f.dir, name.Name)] = reasonDecl{value: value, heading: heading}
				}
			}
		}
	}
	return out
}

func key(dir, name string) string { return filepath.Clean(dir) + "." + name }

// authzDir is this package's directory as parseModule names it.
var authzDir = filepath.Join("..", "..", "internal", "authz")

// isReasonType reports whether a type expression is Reason or authz.Reason.
func isReasonType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "Reason"
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "authz" && e.Sel.Name == "Reason"
	}
	return false
}

// codes are the Code constants by name; codeName resolves an expression
// naming one (CodeForbidden, authz.CodeForbidden).
var codes = map[string]Code{
	"CodeOK": CodeOK, "CodeUnauthenticated": CodeUnauthenticated, "CodeForbidden": CodeForbidden, "CodeUnavailable": CodeUnavailable,
}

func codeName(e ast.Expr) (string, bool) {
	var name string
	switch e := e.(type) {
	case *ast.Ident:
		name = e.Name
	case *ast.SelectorExpr:
		name = e.Sel.Name
	default:
		return "", false
	}
	return name, strings.HasPrefix(name, "Code") && name != "Code"
}

// reasonStatuses finds the status of every declared reason: its group's
// heading, and every place the code pairs it with a Code. They must agree.
func reasonStatuses(t *testing.T, files []goFile, declared map[string]reasonDecl) map[string]int {
	t.Helper()
	// reasonOf resolves an expression naming a reason constant, in the
	// package directory dir.
	reasonOf := func(dir string, e ast.Expr) (string, bool) {
		var k string
		switch e := e.(type) {
		case *ast.Ident:
			k = key(dir, e.Name)
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok && x.Name == "authz" {
				k = key(authzDir, e.Sel.Name)
			}
		}
		r, ok := declared[k]
		return r.value, ok
	}
	statusOf := func(name string) int {
		c, ok := codes[name]
		if !ok {
			t.Fatalf("unknown Code constant %s: add it to this test's codes", name)
		}
		return c.HTTPStatus()
	}

	seen := map[string]map[int][]string{} // reason → status → where
	note := func(reason string, status int, where string) {
		if seen[reason] == nil {
			seen[reason] = map[int][]string{}
		}
		seen[reason][status] = append(seen[reason][status], where)
	}

	// setters are the functions that take a reason and set one Code
	// (deny, allow, HTTP mode's refuse), by package directory and name.
	type setter struct {
		arg  int
		code string
	}
	setters := map[string]setter{}
	for _, f := range files {
		for _, decl := range f.file.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			arg, i := -1, 0
			for _, field := range fd.Type.Params.List {
				for range max(len(field.Names), 1) {
					if isReasonType(field.Type) {
						arg = i
					}
					i++
				}
			}
			if arg < 0 {
				continue
			}
			var set []string
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					if sel, ok := n.Lhs[0].(*ast.SelectorExpr); ok && sel.Sel.Name == "Code" && len(n.Rhs) == 1 {
						if name, ok := codeName(n.Rhs[0]); ok {
							set = append(set, name)
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Code" {
						if name, ok := codeName(n.Value); ok {
							set = append(set, name)
						}
					}
				}
				return true
			})
			if len(set) == 1 {
				setters[key(f.dir, fd.Name.Name)] = setter{arg, set[0]}
			}
		}
	}

	for _, f := range files {
		ast.Inspect(f.file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				var name string
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				s, ok := setters[key(f.dir, name)]
				if !ok || s.arg >= len(n.Args) {
					return true
				}
				if r, ok := reasonOf(f.dir, n.Args[s.arg]); ok {
					note(r, statusOf(s.code), filepath.Base(f.dir)+": "+name+"("+r+")")
				}
			case *ast.CompositeLit:
				var code, reason string
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						el = kv.Value
					}
					if name, ok := codeName(el); ok {
						code = name
					} else if r, ok := reasonOf(f.dir, el); ok {
						reason = r
					}
				}
				if code != "" && reason != "" {
					note(reason, statusOf(code), filepath.Base(f.dir)+": {"+code+", "+reason+"}")
				}
			}
			return true
		})
	}

	out := map[string]int{}
	for _, r := range declared {
		statuses := seen[r.value]
		if r.heading != 0 {
			out[r.value] = r.heading
			for status, where := range statuses {
				if status != r.heading {
					t.Errorf("reason %q is declared under the heading %d but answered %d at %v", r.value, r.heading, status, where)
				}
			}
			continue
		}
		if len(statuses) > 1 {
			t.Errorf("reason %q is answered with several statuses: %v", r.value, statuses)
		}
		for status := range statuses {
			out[r.value] = status
		}
	}
	return out
}

// docReasons reads the table of the "## Deny reasons" section: rows whose
// first cell is a `reason` and whose second is its status.
func docReasons(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Deny reasons\n")
	if !ok {
		t.Fatalf("%s has no \"## Deny reasons\" section", path)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) < 2 {
			t.Errorf("%s: table row %q has no status cell", path, line)
			continue
		}
		reason := strings.Trim(strings.TrimSpace(cells[0]), "`")
		status, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			t.Errorf("%s: reason %q: status %q is not a number", path, reason, cells[1])
			continue
		}
		if _, dup := out[reason]; dup {
			t.Errorf("%s: reason %q has two rows", path, reason)
		}
		out[reason] = status
	}
	if len(out) == 0 {
		t.Fatalf("%s: the Deny reasons section has no table rows", path)
	}
	return out
}
