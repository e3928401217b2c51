package pg

import (
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestParseRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string
		want   []string
	}{
		{"no rows", nil, nil},
		{"single", []string{"owner"}, []string{"owner"}},
		{"comma-joined", []string{"admin,member"}, []string{"admin", "member"}},
		{"spaces and tabs trimmed", []string{" admin ,\tmember\n"}, []string{"admin", "member"}},
		{"inner space kept", []string{"team lead"}, []string{"team lead"}},
		{"empties dropped", []string{",admin,,", " , "}, []string{"admin"}},
		{"only separators", []string{" , ,"}, nil},
		{"duplicates in one row", []string{"admin,admin,member"}, []string{"admin", "member"}},
		{"first-seen order across rows", []string{"member", "admin,member,billing"}, []string{"member", "admin", "billing"}},
		{"case preserved, not folded", []string{"Admin,admin"}, []string{"Admin", "admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := parseRoles(tt.values); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseRoles(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
}

func TestParsePermissions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want []string // one resource per case: actions keep their order
	}{
		{"one resource", `{"project":["read","update"]}`, []string{"project:read", "project:update"}},
		{"empty object", `{}`, nil},
		{"JSON null", `null`, nil},
		{"null actions", `{"project":null}`, nil},
		{"empty names skipped", `{"":["read"],"project":["","read"]}`, []string{"project:read"}},
		{"truncated", `{"project":["read"`, nil},
		{"actions not an array", `{"project":"read"}`, nil},
		{"not an object", `["project:read"]`, nil},
		{"non-string action", `{"project":[1]}`, nil},
		{"empty text", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := parsePermissions(tt.doc); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsePermissions(%q) = %q, want %q", tt.doc, got, tt.want)
			}
		})
	}
}

func TestCustomRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		held         []string
		names, perms []string
		want         map[string][]string
	}{
		{name: "none", held: []string{"member"}},
		{
			name:  "sorted",
			held:  []string{"billing"},
			names: []string{"billing"},
			perms: []string{`{"project":["update","read"],"invitation":["create"]}`},
			want:  map[string][]string{"billing": {"invitation:create", "project:read", "project:update"}},
		},
		{
			name:  "duplicate rows merged and deduplicated",
			held:  []string{"billing"},
			names: []string{"billing", "billing"},
			perms: []string{`{"project":["read"]}`, `{"project":["read","update"]}`},
			want:  map[string][]string{"billing": {"project:read", "project:update"}},
		},
		{
			name:  "malformed row present but empty",
			held:  []string{"broken"},
			names: []string{"broken"},
			perms: []string{`{`},
			want:  map[string][]string{"broken": {}},
		},
		{
			name:  "row for a role not held is ignored",
			held:  []string{"member"},
			names: []string{""},
			perms: []string{`{"project":["delete"]}`},
		},
		{
			name:  "mismatched arrays ignored",
			held:  []string{"billing"},
			names: []string{"billing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := customRoles(tt.held, tt.names, tt.perms); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("customRoles = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestBanEnd(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		ts   pgtype.Timestamptz
		want time.Time
	}{
		{"NULL is forever", pgtype.Timestamptz{}, time.Time{}},
		{"infinity is forever", pgtype.Timestamptz{Valid: true, InfinityModifier: pgtype.Infinity}, time.Time{}},
		{"-infinity has ended", pgtype.Timestamptz{Valid: true, InfinityModifier: pgtype.NegativeInfinity}, time.Unix(0, 0).UTC()},
		{"a date", pgtype.Timestamptz{Valid: true, Time: at}, at},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := banEnd(tt.ts); !got.Equal(tt.want) {
				t.Errorf("banEnd = %v, want %v", got, tt.want)
			}
		})
	}
}
