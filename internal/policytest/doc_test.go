package policytest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/policy.md documents the test file format ("Policy tests"): one
// table per mapping, after a "<!-- test keys: NAME -->" marker, whose
// first column lists exactly the keys parseFile accepts.
func TestDocListsTheTestFileKeys(t *testing.T) {
	t.Parallel()
	const docPath = "../../docs/policy.md"
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"file": fileKeys, "case": caseKeys, "request": requestKeys, "user": userKeys, "expect": expectKeys}
	marker := regexp.MustCompile(`^<!-- test keys: ([a-z]+) -->$`)
	name := regexp.MustCompile("^`([a-z_]+)`$")
	lines := strings.Split(string(b), "\n")
	got := map[string][]string{}
	for i, line := range lines {
		m := marker.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		keys := []string{}
		rows := 0
		for j := i + 1; j < len(lines); j++ {
			l := strings.TrimSpace(lines[j])
			if l == "" && rows == 0 {
				continue
			}
			if !strings.HasPrefix(l, "|") {
				break
			}
			rows++
			if rows <= 2 { // header and separator
				continue
			}
			first := strings.TrimSpace(strings.Split(strings.Trim(l, "|"), "|")[0])
			k := name.FindStringSubmatch(first)
			if k == nil {
				t.Fatalf("%s:%d: a key table row must start with one `key`", docPath, j+1)
			}
			keys = append(keys, k[1])
		}
		got[m[1]] = keys
	}
	for mapping, keys := range want {
		if !slices.Equal(slices.Sorted(slices.Values(got[mapping])), slices.Sorted(slices.Values(keys))) {
			t.Errorf("%s: the %q table lists %v; the test file format has %v", docPath, mapping, got[mapping], keys)
		}
	}
	for mapping := range got {
		if _, ok := want[mapping]; !ok {
			t.Errorf("%s: a table for %q, which the test file format does not have", docPath, mapping)
		}
	}
}
