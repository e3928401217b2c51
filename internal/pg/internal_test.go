package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/authz-sidecar/authz-sidecar/internal/policy"
)

// The schema section may rename every table and field a query reads.
func TestTablesReadAreModels(t *testing.T) {
	t.Parallel()
	for _, tb := range tablesRead {
		fields, ok := policy.Models[tb.model]
		if !ok {
			t.Errorf("model %s is read but not in policy.Models", tb.model)
			continue
		}
		if _, ok := pluralNames[tb.model]; !ok {
			t.Errorf("model %s has no plural name", tb.model)
		}
		for _, c := range tb.columns {
			if !slices.Contains(fields, c.field) {
				t.Errorf("%s.%s is read but not in policy.Models", tb.model, c.field)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), CauseTimeout},
		{"canceled", context.Canceled, CauseCanceled},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, CauseTimeout},
		{"connection failure", &pgconn.PgError{Code: "08006"}, CauseConnection},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, CauseConnection},
		{"too many connections", &pgconn.PgError{Code: "53300"}, CauseConnection},
		{"undefined table", &pgconn.PgError{Code: "42P01"}, CauseSchema},
		{"undefined column", &pgconn.PgError{Code: "42703"}, CauseSchema},
		{"permission denied", &pgconn.PgError{Code: "42501"}, CauseSchema},
		{"schema error", &SchemaError{Problems: []string{"x"}}, CauseSchema},
		{"other server error", &pgconn.PgError{Code: "22P02"}, CauseOther},
		{"dial", &net.OpError{Op: "dial", Err: errors.New("refused")}, CauseConnection},
		{"eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), CauseConnection},
		{"anything else", errors.New("boom"), CauseOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
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
