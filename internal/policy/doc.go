// Package policy owns policies.yaml: it loads and validates the file and
// matches requests to its routes. It is pure domain code (standard library
// and a YAML parser only); deciding, caching and transport live elsewhere.
//
// # File format
//
// docs/policy.md is the reference for the file format, written for policy
// authors: every section and key, how a decision is made, validation and
// reload. Keys (keys.go) is the loader's one list of keys; doc_test.go
// fails when the two disagree, and schema_test.go when policies.schema.json
// (for editors) does. Unknown keys are errors, strings must be YAML strings,
// booleans true or false, and YAML aliases are refused.
//
// # Path templates
//
// A template starts with "/" and is split on "/" into segments; "/" alone
// is the root. No segment may be empty (no "//", no trailing "/"). A segment
// is
//   - a literal, matched exactly and case-sensitively, byte for byte (it
//     must be a segment CheckPath accepts, so no ".", "..", ";" or encoded
//     "/");
//   - {name} ([A-Za-z_][A-Za-z0-9_]*): one non-empty segment, captured;
//   - *: one non-empty segment, not captured;
//   - **: only as the last segment: zero or more remaining segments,
//     including an empty last segment (a trailing slash). So
//     "/api/orgs/{org}/leave/**" matches "/api/orgs/o1/leave",
//     "/api/orgs/o1/leave/" and "/api/orgs/o1/leave/a/b".
//
// A template has at most MaxParams {name} and * segments together.
// Paths are not decoded or normalised before matching: "/api/me/" does not
// match "/api/me", and "/API/me" does not match it either. Callers run
// CheckPath first, which refuses every path whose meaning is ambiguous.
//
// # Precedence
//
// When several routes match a request, the winner is chosen so:
//  1. Only routes whose methods include the request method (or that list
//     no methods) are candidates.
//  2. Templates are compared segment by segment from the left: a literal
//     beats {name} or *, which beat **.
//  3. A template that ends where the path ends beats one whose ** matches
//     zero segments there ("/a" beats "/a/**" for the path "/a"). This is
//     the only case where templates of different lengths tie on rule 2.
//  4. A route that lists methods beats one that lists none.
//  5. The route that comes first in the file wins.
//
// Policy.Warnings names routes that can never win by these rules.
//
// Matching walks a segment trie built at load time, visits each trie node
// at most once, and does not allocate.
package policy
