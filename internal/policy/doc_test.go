package policy

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docs/policy.md is the reference for policies.yaml. These tests keep it
// true to the loader: each mapping of Keys has one key table in the doc
// (after a "<!-- keys: NAME -->" marker) listing exactly its keys, the
// schema section's model table lists exactly Models, every example marked
// "<!-- valid policy -->" loads, and the example marked "<!-- invalid
// policy: NAME -->" fails with exactly the problems the doc shows.

const docPath = "../../docs/policy.md"

var (
	keysMarker    = regexp.MustCompile(`^<!-- keys: ([a-z_.]+) -->$`)
	invalidMarker = regexp.MustCompile(`^<!-- invalid policy: ([a-z_.]+) -->$`)
	backticked    = regexp.MustCompile("`([^`]+)`")
)

func readDoc(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

// tableAfter returns the data rows (cells trimmed) of the Markdown table
// that follows line i, skipping blank lines before it.
func tableAfter(t *testing.T, lines []string, i int) [][]string {
	t.Helper()
	j := i + 1
	for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
		j++
	}
	var rows [][]string
	for ; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
		cells := strings.Split(strings.Trim(lines[j], "|"), "|")
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		rows = append(rows, cells)
	}
	if len(rows) < 3 {
		t.Fatalf("%s:%d: the marker is not followed by a table with a header, a separator and rows", docPath, i+1)
	}
	return rows[2:]
}

// firstCellName returns the one name a row's first cell holds in
// backticks.
func firstCellName(t *testing.T, row []string) string {
	t.Helper()
	m := backticked.FindAllStringSubmatch(row[0], -1)
	if len(m) != 1 {
		t.Fatalf("%s: a key table row must start with one `name`: %q", docPath, strings.Join(row, " | "))
	}
	return m[0][1]
}

func TestDocListsTheLoadersKeys(t *testing.T) {
	t.Parallel()
	lines := readDoc(t)
	documented := map[string][]string{}
	for i, line := range lines {
		m := keysMarker.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if _, dup := documented[name]; dup {
			t.Errorf("%s:%d: a second key table for %q", docPath, i+1, name)
		}
		documented[name] = []string{}
		for _, row := range tableAfter(t, lines, i) {
			documented[name] = append(documented[name], firstCellName(t, row))
		}
	}
	for name, keys := range Keys {
		got, ok := documented[name]
		if !ok {
			t.Errorf("%s has no key table for %q (<!-- keys: %s -->)", docPath, name, name)
			continue
		}
		for _, k := range keys {
			if !slices.Contains(got, k) {
				t.Errorf("%s: the key table of %q does not document %q", docPath, name, k)
			}
		}
		for _, k := range got {
			if !slices.Contains(keys, k) {
				t.Errorf("%s: the key table of %q documents %q, which the loader does not know", docPath, name, k)
			}
		}
	}
	for name := range documented {
		if _, ok := Keys[name]; !ok {
			t.Errorf("%s has a key table for %q, which the loader does not know", docPath, name)
		}
	}
}

func TestDocListsTheModels(t *testing.T) {
	t.Parallel()
	lines := readDoc(t)
	i := slices.Index(lines, "<!-- models -->")
	if i < 0 {
		t.Fatalf("%s has no model table (<!-- models -->)", docPath)
	}
	seen := map[string]bool{}
	for _, row := range tableAfter(t, lines, i) {
		model := firstCellName(t, row)
		seen[model] = true
		fields, ok := Models[model]
		if !ok {
			t.Errorf("%s: the model table names %q, which the schema section does not know", docPath, model)
			continue
		}
		// The fields column: every field the sidecar reads, nothing else.
		var got []string
		for _, m := range backticked.FindAllStringSubmatch(row[2], -1) {
			got = append(got, m[1])
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(fields))) {
			t.Errorf("%s: model %q: fields %v, the loader's %v", docPath, model, got, fields)
		}
	}
	for _, m := range modelNames() {
		if !seen[m] {
			t.Errorf("%s: the model table lacks %q", docPath, m)
		}
	}
}

// fence returns the lines of the fenced code block that starts at or after
// line i (skipping blank lines), and the index after it.
func fence(t *testing.T, lines []string, i int) ([]string, int) {
	t.Helper()
	j := i
	for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
		j++
	}
	if j == len(lines) || !strings.HasPrefix(lines[j], "```") {
		t.Fatalf("%s:%d: expected a fenced code block", docPath, i+1)
	}
	start := j + 1
	for j = start; j < len(lines) && lines[j] != "```"; j++ {
	}
	return lines[start:j], j + 1
}

func TestDocExamplesAreValid(t *testing.T) {
	t.Parallel()
	lines := readDoc(t)
	n := 0
	for i, line := range lines {
		if line != "<!-- valid policy -->" {
			continue
		}
		n++
		block, _ := fence(t, lines, i+1)
		// Named as if beside policies.yaml, so that app_roles resolves as
		// it would in the repository.
		name := filepath.Join("../..", "example-at-line-"+strconv.Itoa(i+2)+".yaml")
		if _, err := ParseWith(name, []byte(strings.Join(block, "\n")), os.ReadFile); err != nil {
			t.Errorf("%s:%d: the example does not load:\n%v", docPath, i+2, err)
		}
	}
	if n == 0 {
		t.Errorf("%s has no example marked <!-- valid policy -->", docPath)
	}
}

func TestDocShowsRealProblems(t *testing.T) {
	t.Parallel()
	lines := readDoc(t)
	n := 0
	for i, line := range lines {
		m := invalidMarker.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		name := m[1]
		block, next := fence(t, lines, i+1)
		shown, _ := fence(t, lines, next)
		var want []string
		for _, l := range shown {
			if strings.HasPrefix(l, name+":") {
				want = append(want, l)
			}
		}
		_, err := Parse(name, []byte(strings.Join(block, "\n")+"\n"))
		var perr *Error
		if !errors.As(err, &perr) {
			t.Errorf("%s:%d: the invalid example loads (err %v)", docPath, i+1, err)
			continue
		}
		got := strings.Split(perr.Error(), "\n")
		if !slices.Equal(got, want) {
			t.Errorf("%s:%d: the output shown is not what the loader says; it says:\n%s", docPath, i+1, perr.Error())
		}
	}
	if n == 0 {
		t.Errorf("%s has no example marked <!-- invalid policy: NAME -->", docPath)
	}
}
