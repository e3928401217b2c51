package policy

import (
	"strconv"
	"strings"
)

// MaxParams is the largest number of single-segment wildcards ({name} and
// "*" together) one route template may have. It sizes the fixed array in
// Match, which keeps matching free of heap allocations.
const MaxParams = 8

type segKind uint8

const (
	segLiteral segKind = iota // matches itself exactly
	segParam                  // {name}: one non-empty segment, captured
	segStar                   // *: one non-empty segment, not captured
	segRest                   // **: the rest of the path, zero or more segments
)

// segment is one compiled piece of a route template.
type segment struct {
	kind  segKind
	value string // the literal, or the parameter name; "" otherwise
}

// compileTemplate turns a path template into segments and the names of its
// single-segment wildcards in order ("" for "*"). It returns a message for
// each problem found; segments are only meaningful when there are none.
func compileTemplate(tmpl string) (segs []segment, params []string, problems []string) {
	if !strings.HasPrefix(tmpl, "/") {
		return nil, nil, []string{"path template must start with \"/\""}
	}
	if tmpl == "/" {
		return nil, nil, nil
	}
	parts := strings.Split(tmpl[1:], "/")
	seen := make(map[string]bool)
	for i, part := range parts {
		switch {
		case part == "":
			problems = append(problems, "path template has an empty segment (\"//\" or a trailing \"/\")")
		case part == "**":
			if i != len(parts)-1 {
				problems = append(problems, "\"**\" may only be the last segment of a path template")
			}
			segs = append(segs, segment{kind: segRest})
		case part == "*":
			segs = append(segs, segment{kind: segStar})
			params = append(params, "")
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			if !isParamName(name) {
				problems = append(problems, "bad parameter "+strconv.Quote(part)+": a name is a letter or \"_\" followed by letters, digits or \"_\"")
			} else if seen[name] {
				problems = append(problems, "parameter "+strconv.Quote(name)+" appears twice in the path template")
			}
			seen[name] = true
			segs = append(segs, segment{kind: segParam, value: name})
			params = append(params, name)
		case strings.ContainsAny(part, "{}*"):
			problems = append(problems, "bad segment "+strconv.Quote(part)+": \"{name}\", \"*\" and \"**\" must be a whole segment")
		default:
			// A literal that CheckPath would refuse could never match, and
			// more likely means the author expected decoding or dot
			// resolution that does not happen.
			if err := CheckPath("/"+part, 0); err != nil {
				problems = append(problems, "bad segment "+strconv.Quote(part)+": "+err.(*PathError).Reason)
			}
			segs = append(segs, segment{kind: segLiteral, value: part})
		}
	}
	if len(params) > MaxParams {
		problems = append(problems, "path template has more than "+strconv.Itoa(MaxParams)+" \"{name}\" and \"*\" segments")
	}
	return segs, params, problems
}

// isParamName reports whether s matches [A-Za-z_][A-Za-z0-9_]*.
func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// node is one level of the route trie. The trie is a tree, so a lookup
// visits each node at most once: matching costs at most the size of the
// trie, however the path is shaped.
type node struct {
	literals map[string]*node // children for literal segments; nil if none
	wild     *node            // child for {name} and "*" segments; nil if none
	exact    []*Route         // routes whose template ends at this node, in file order
	rest     []*Route         // routes whose template ends with "**" here, in file order
}

func (n *node) insert(r *Route) {
	for _, s := range r.segs {
		switch s.kind {
		case segLiteral:
			if n.literals == nil {
				n.literals = make(map[string]*node)
			}
			c := n.literals[s.value]
			if c == nil {
				c = &node{}
				n.literals[s.value] = c
			}
			n = c
		case segParam, segStar:
			if n.wild == nil {
				n.wild = &node{}
			}
			n = n.wild
		case segRest:
			n.rest = append(n.rest, r)
			return
		}
	}
	n.exact = append(n.exact, r)
}

// lookup finds the best route for the path segments in p. end reports that
// no segments are left (p is then empty); it is needed because "" with
// segments left is one empty segment, as after a trailing slash. Children are
// tried in precedence order (literal, then wildcard, then "**"), so the first
// route found is the best one. Captured segments go to vals[nv:].
func (n *node) lookup(p string, end bool, method uint16, vals *[MaxParams]string, nv int) *Route {
	if end {
		if r := pick(n.exact, method); r != nil {
			return r
		}
		return pick(n.rest, method)
	}
	seg, rest, more := strings.Cut(p, "/")
	if c := n.literals[seg]; c != nil {
		if r := c.lookup(rest, !more, method, vals, nv); r != nil {
			return r
		}
	}
	// A wildcard never matches an empty segment; nv < MaxParams always
	// holds for a compiled trie and only guards the array index.
	if n.wild != nil && seg != "" && nv < MaxParams {
		vals[nv] = seg
		if r := n.wild.lookup(rest, !more, method, vals, nv+1); r != nil {
			return r
		}
	}
	return pick(n.rest, method)
}

// pick returns the first route listing the method, else the first route
// listing no methods, else nil.
func pick(routes []*Route, method uint16) *Route {
	var anyMethod *Route
	for _, r := range routes {
		if r.methods&method != 0 {
			return r
		}
		if r.methods == 0 && anyMethod == nil {
			anyMethod = r
		}
	}
	return anyMethod
}

// Match is the result of matching a request against a policy. It is a
// value: the captured parameters live in a fixed array and are substrings of
// the matched path, so matching does not allocate.
type Match struct {
	// Route is the matched route.
	Route *Route

	// vals[i] is the path segment matched by the i-th {name} or "*" of
	// Route's template.
	vals [MaxParams]string
}

// Param returns the path segment captured by {name} in the route's
// template. ok is false when the template has no such parameter.
func (m *Match) Param(name string) (value string, ok bool) {
	if m.Route == nil || name == "" {
		return "", false
	}
	for i, p := range m.Route.params {
		if p == name {
			return m.vals[i], true
		}
	}
	return "", false
}

// Match finds the route for a request. method is the request method as sent
// (HTTP methods are case-sensitive, so "get" matches no route that lists
// GET). path is the request path without the query string; callers must run
// CheckPath on it first, because Match compares raw strings and does not
// decode or normalise anything. ok is false when no route matches; the
// policy default (deny) then applies.
//
// Match does not allocate.
func (p *Policy) Match(method, path string) (m Match, ok bool) {
	if p.root == nil || !strings.HasPrefix(path, "/") {
		return Match{}, false
	}
	rest := path[1:]
	m.Route = p.root.lookup(rest, rest == "", methodBit(method), &m.vals, 0)
	if m.Route == nil {
		return Match{}, false
	}
	// Drop segments captured on branches the lookup backtracked from.
	clear(m.vals[len(m.Route.params):])
	return m, true
}

// Match matches path against this route's template alone, ignoring methods
// and other routes. It is for a route chosen by name (Envoy's
// context_extensions), where Policy.Match is skipped but path parameters,
// such as an organization id, are still wanted. ok is false when the path
// does not fit the template. Like Policy.Match it expects a path that passed
// CheckPath and does not allocate.
func (r *Route) Match(path string) (m Match, ok bool) {
	if !strings.HasPrefix(path, "/") {
		return Match{}, false
	}
	p := path[1:]
	end := p == ""
	nv := 0
	for _, s := range r.segs {
		if s.kind == segRest {
			m.Route = r
			return m, true
		}
		if end {
			return Match{}, false
		}
		seg, rest, more := strings.Cut(p, "/")
		switch s.kind {
		case segLiteral:
			if seg != s.value {
				return Match{}, false
			}
		case segParam, segStar:
			if seg == "" || nv >= MaxParams {
				return Match{}, false
			}
			m.vals[nv] = seg
			nv++
		}
		p, end = rest, !more
	}
	if !end {
		return Match{}, false
	}
	m.Route = r
	return m, true
}

// knownMethods lists the methods a route may name. Limiting routes to these
// catches typos ("GTE") that would otherwise make a route silently
// unreachable.
const knownMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE"

// methodBit maps a request method to its bit, or 0 for any method not in
// knownMethods (which then only matches routes that list no methods).
func methodBit(method string) uint16 {
	switch method {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "DELETE":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	}
	return 0
}
