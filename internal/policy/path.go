package policy

import (
	"errors"
	"strconv"
	"strings"
)

// ErrAmbiguousPath is wrapped (through *PathError) by every error CheckPath
// returns. A request whose path is ambiguous must be refused, not matched:
// the sidecar and the upstream application could read such a path
// differently, and any difference is a way around a route's requirements.
var ErrAmbiguousPath = errors.New("ambiguous path")

// PathError says why CheckPath refused a path.
type PathError struct {
	// Reason is a short fixed phrase such as "encoded slash (%2F)" or
	// "dot segment". It never contains request data, so it is safe to log
	// and to use as a metric label value.
	Reason string
	// Offset is the byte offset in the path where the problem starts.
	Offset int
}

// Error returns "ambiguous path: <reason> at byte <offset>".
func (e *PathError) Error() string {
	return ErrAmbiguousPath.Error() + ": " + e.Reason + " at byte " + strconv.Itoa(e.Offset)
}

// Unwrap lets errors.Is(err, ErrAmbiguousPath) hold.
func (e *PathError) Unwrap() error { return ErrAmbiguousPath }

// SplitQuery returns the path part of an HTTP/2 :path (or HTTP/1 origin-form
// request target): everything before the first "?". The query never takes
// part in route matching.
func SplitQuery(raw string) (path string) {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}

// CheckPath is the security contract for request paths. The sidecar expects
// Envoy to have run normalize_path and merge_slashes already; whatever is
// still ambiguous after that is refused rather than guessed at, because the
// sidecar matches the raw string and the upstream application will decode
// and normalise it its own way.
//
// path is the path WITHOUT the query string (see SplitQuery). maxLen is the
// largest accepted length in bytes; maxLen <= 0 means no limit.
//
// CheckPath returns nil or a *PathError wrapping ErrAmbiguousPath when path:
//   - is empty or does not start with "/";
//   - is longer than maxLen;
//   - still contains "?" (the query was not split off);
//   - has an empty segment ("//" anywhere; a single trailing "/" is fine and
//     is a different path from the one without it);
//   - has a "." or ".." segment;
//   - contains "\", "#", ";" (path parameters, as in "/a;x=..;/b"), a
//     control byte (< 0x20 or 0x7f), a byte >= 0x80 (raw non-ASCII), or any
//     other byte RFC 3986 does not allow in a path (space " < > [ ] ^ ` { | });
//   - has a malformed percent-escape ("%" not followed by two hex digits);
//   - percent-encodes "/" (%2F), "\" (%5C), "." (%2E), "%" (%25, double
//     encoding), ";" (%3B), NUL (%00) or another control byte, or any
//     unreserved character (A-Z a-z 0-9 - . _ ~), which normalize_path would
//     have decoded, so its presence means two spellings of one path.
//
// Hex digits are accepted in either case. Letters are not folded: "/API/me"
// passes CheckPath and does not match a route for "/api/me".
//
// CheckPath does not allocate unless it returns an error.
func CheckPath(path string, maxLen int) error {
	if path == "" {
		return &PathError{Reason: "empty path", Offset: 0}
	}
	if path[0] != '/' {
		return &PathError{Reason: "path does not start with /", Offset: 0}
	}
	if maxLen > 0 && len(path) > maxLen {
		return &PathError{Reason: "path too long", Offset: maxLen}
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if isPathByte(c) {
			continue
		}
		switch c {
		case '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return &PathError{Reason: "malformed percent-encoding", Offset: i}
			}
			if reason := escapeProblem(unhex(path[i+1])<<4 | unhex(path[i+2])); reason != "" {
				return &PathError{Reason: reason, Offset: i}
			}
			i += 2
		case '?':
			return &PathError{Reason: "query not split off", Offset: i}
		case '\\':
			return &PathError{Reason: "backslash", Offset: i}
		case '#':
			return &PathError{Reason: "fragment (#)", Offset: i}
		case ';':
			return &PathError{Reason: "semicolon (path parameters)", Offset: i}
		default:
			return &PathError{Reason: byteProblem(c), Offset: i}
		}
	}
	// Segment checks: path[0] is '/', so segments start at 1.
	start := 1
	for {
		seg, _, more := strings.Cut(path[start:], "/")
		if seg == "" && more {
			return &PathError{Reason: "empty segment (//)", Offset: start}
		}
		if seg == "." || seg == ".." {
			return &PathError{Reason: "dot segment", Offset: start}
		}
		if !more {
			return nil
		}
		start += len(seg) + 1
	}
}

// byteProblem says why a byte that is neither a path byte nor one CheckPath
// names is refused.
//
// Range checks are ifs, not the cases of a tagless switch: Go's coverage
// profile has no block for case conditions, so mutation testing (make
// mutation) could not see them run.
func byteProblem(c byte) string {
	if c < 0x20 || c == 0x7f {
		return "control character"
	}
	if c >= 0x80 {
		return "non-ASCII byte"
	}
	return "character not allowed in a path"
}

// escapeProblem says why a percent-encoded byte is refused, or "" when it is
// fine.
func escapeProblem(b byte) string {
	switch b {
	case '/':
		return "encoded slash (%2F)"
	case '\\':
		return "encoded backslash (%5C)"
	case '.':
		return "encoded dot (%2E)"
	case '%':
		return "encoded percent (%25)"
	case ';':
		return "encoded semicolon (%3B)"
	case 0:
		return "encoded NUL (%00)"
	}
	if b < 0x20 || b == 0x7f {
		return "encoded control character"
	}
	if isUnreserved(b) {
		return "encoded unreserved character"
	}
	return ""
}

// isPathByte reports whether c may appear unescaped in a checked path:
// RFC 3986 pchar (unreserved, sub-delims, ":" and "@") and "/", minus ";".
func isPathByte(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@', '/':
		return true
	}
	return isUnreserved(c)
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex is the value of a hex digit (isHex).
func unhex(c byte) byte {
	if '0' <= c && c <= '9' {
		return c - '0'
	}
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
