package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   string
		maxLen int
		reason string // "" = accepted
	}{
		{"root", "/", 100, ""},
		{"plain", "/api/orgs/o1/leave", 100, ""},
		{"trailing slash is allowed", "/api/me/", 100, ""},
		{"mixed case is allowed", "/API/Me", 100, ""},
		{"sub-delims and colon", "/a/b:c@d!$&'()*+,=", 100, ""},
		{"tilde dash underscore", "/a-b_c~d.e", 100, ""},
		{"dots inside a segment", "/a/..b/c../.d", 100, ""},
		{"encoded space", "/a%20b", 100, ""},
		{"encoded utf-8", "/caf%C3%A9", 100, ""},
		{"encoded question mark", "/a%3Fb", 100, ""},
		{"exactly maxLen", "/abcd", 5, ""},
		{"no limit", "/" + strings.Repeat("a", 10000), 0, ""},

		{"empty", "", 100, "empty path"},
		{"relative", "api/me", 100, "path does not start with /"},
		{"asterisk form", "*", 100, "path does not start with /"},
		{"absolute form", "http://x/a", 100, "path does not start with /"},
		{"overlong", "/abcde", 5, "path too long"},
		{"double slash", "/a//b", 100, "empty segment (//)"},
		{"leading double slash", "//a", 100, "empty segment (//)"},
		{"trailing double slash", "/a//", 100, "empty segment (//)"},
		{"dot segment", "/a/./b", 100, "dot segment"},
		{"dot-dot segment", "/a/../b", 100, "dot segment"},
		{"trailing dot", "/a/.", 100, "dot segment"},
		{"trailing dot-dot", "/a/..", 100, "dot segment"},
		{"only dot-dot", "/..", 100, "dot segment"},
		{"backslash", "/a\\..\\b", 100, "backslash"},
		{"fragment", "/a#b", 100, "fragment (#)"},
		{"semicolon", "/a;b", 100, "semicolon (path parameters)"},
		{"tomcat dot-dot-semicolon", "/a/..;/b", 100, "semicolon (path parameters)"},
		{"query not split", "/a?b=c", 100, "query not split off"},
		{"NUL byte", "/a\x00b", 100, "control character"},
		{"newline", "/a\nb", 100, "control character"},
		{"tab", "/a\tb", 100, "control character"},
		{"DEL", "/a\x7fb", 100, "control character"},
		{"the last C0 control", "/a\x1fb", 100, "control character"},
		{"non-ASCII", "/caf\xc3\xa9", 100, "non-ASCII byte"},
		{"the first non-ASCII byte", "/a\x80", 100, "non-ASCII byte"},
		{"space", "/a b", 100, "character not allowed in a path"},
		{"brace", "/a{b}", 100, "character not allowed in a path"},
		{"pipe", "/a|b", 100, "character not allowed in a path"},
		{"encoded slash", "/a%2Fb", 100, "encoded slash (%2F)"},
		{"encoded slash lower case", "/a%2fb", 100, "encoded slash (%2F)"},
		{"encoded backslash", "/a%5cb", 100, "encoded backslash (%5C)"},
		{"encoded dot-dot", "/a/%2e%2e/b", 100, "encoded dot (%2E)"},
		{"half-encoded dot-dot", "/a/.%2E/b", 100, "encoded dot (%2E)"},
		{"encoded percent (double encoding)", "/a%252Fb", 100, "encoded percent (%25)"},
		{"encoded semicolon", "/a%3Bb", 100, "encoded semicolon (%3B)"},
		{"encoded NUL", "/a%00b", 100, "encoded NUL (%00)"},
		{"encoded newline", "/a%0Ab", 100, "encoded control character"},
		{"encoded last C0 control", "/a%1fb", 100, "encoded control character"},
		{"encoded high bytes of hex letters", "/%a0%f0%A0%F0%9F", 100, ""},
		{"encoded DEL", "/a%7fb", 100, "encoded control character"},
		{"encoded letter", "/%61dmin", 100, "encoded unreserved character"},
		{"encoded digit", "/a%31", 100, "encoded unreserved character"},
		{"encoded tilde", "/a%7E", 100, "encoded unreserved character"},
		{"truncated escape", "/a%2", 100, "malformed percent-encoding"},
		{"bare percent", "/a%", 100, "malformed percent-encoding"},
		{"non-hex escape", "/a%zz", 100, "malformed percent-encoding"},
		{"half-hex escape", "/a%4g", 100, "malformed percent-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckPath(tt.path, tt.maxLen)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("CheckPath(%q) = %v, want nil", tt.path, err)
				}
				return
			}
			if !errors.Is(err, ErrAmbiguousPath) {
				t.Fatalf("CheckPath(%q) = %v, want ErrAmbiguousPath", tt.path, err)
			}
			var perr *PathError
			if !errors.As(err, &perr) || perr.Reason != tt.reason {
				t.Fatalf("CheckPath(%q) = %v, want reason %q", tt.path, err, tt.reason)
			}
			if perr.Offset < 0 || perr.Offset > len(tt.path) {
				t.Errorf("offset %d out of range", perr.Offset)
			}
			if strings.Contains(err.Error(), tt.path[min(1, len(tt.path)):]) && len(tt.path) > 3 {
				t.Errorf("error %q repeats the request path", err)
			}
		})
	}
}

func TestCheckPathMixedCaseDoesNotMatchLowerCaseRoute(t *testing.T) {
	t.Parallel()
	p := mustParse(t, matchPolicy)
	if err := CheckPath("/API/ME", 100); err != nil {
		t.Fatalf("CheckPath: %v", err)
	}
	if m, ok := p.Match("GET", "/API/ME"); ok {
		t.Fatalf("/API/ME matched %q", m.Route.Name)
	}
}

func TestSplitQuery(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{"/a", "/a"},
		{"/a?b=c", "/a"},
		{"/a?b=c?d", "/a"},
		{"/a?", "/a"},
		{"?x", ""},
		{"", ""},
		{"/a#f?x", "/a#f"}, // then refused by CheckPath for the "#"
	}
	for _, tt := range tests {
		if got := SplitQuery(tt.raw); got != tt.want {
			t.Errorf("SplitQuery(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// TestPathBytes checks the byte classes against their definitions, byte by
// byte: RFC 3986 unreserved, pchar minus ";" plus "/", and hex digits.
func TestPathBytes(t *testing.T) {
	t.Parallel()
	const (
		unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
		pathOnly   = "!$&'()*+,=:@/"
		hexDigits  = "0123456789abcdefABCDEF"
	)
	for i := range 256 {
		c := byte(i)
		if got, want := isUnreserved(c), strings.IndexByte(unreserved, c) >= 0; got != want {
			t.Errorf("isUnreserved(%q) = %v, want %v", c, got, want)
		}
		if got, want := isPathByte(c), strings.IndexByte(unreserved+pathOnly, c) >= 0; got != want {
			t.Errorf("isPathByte(%q) = %v, want %v", c, got, want)
		}
		if got, want := isHex(c), strings.IndexByte(hexDigits, c) >= 0; got != want {
			t.Errorf("isHex(%q) = %v, want %v", c, got, want)
		}
		if !isHex(c) {
			continue
		}
		want, err := strconv.ParseUint(string(c), 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		if got := unhex(c); uint64(got) != want {
			t.Errorf("unhex(%q) = %d, want %d", c, got, want)
		}
	}
}
