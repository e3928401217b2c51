package authn

import (
	"errors"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		header  string
		want    string
		wantErr error
	}{
		{name: "canonical", header: "Bearer x", want: "x"},
		{name: "lower case scheme", header: "bearer x", want: "x"},
		{name: "upper case scheme", header: "BEARER x", want: "x"},
		{name: "several spaces and tabs", header: "Bearer \t  x", want: "x"},
		{name: "jwt", header: "Bearer eyJh.eyJz.c2ln", want: "eyJh.eyJz.c2ln"},
		{name: "b64token padding", header: "Bearer abc+/~==", want: "abc+/~=="},
		{name: "absent", header: "", wantErr: ErrNoToken},
		{name: "scheme only", header: "Bearer", wantErr: ErrMalformedHeader},
		{name: "scheme and space", header: "Bearer ", wantErr: ErrMalformedHeader},
		{name: "scheme and spaces", header: "Bearer   ", wantErr: ErrMalformedHeader},
		{name: "other scheme", header: "Basic x", wantErr: ErrMalformedHeader},
		{name: "no separator", header: "Bearerx", wantErr: ErrMalformedHeader},
		{name: "prefix of scheme", header: "Bear x", wantErr: ErrMalformedHeader},
		{name: "two tokens", header: "Bearer a b", wantErr: ErrMalformedHeader},
		{name: "joined headers", header: "Bearer a,Bearer b", wantErr: ErrMalformedHeader},
		{name: "trailing comma", header: "Bearer a,", wantErr: ErrMalformedHeader},
		{name: "trailing space", header: "Bearer a ", wantErr: ErrMalformedHeader},
		{name: "leading space", header: " Bearer a", wantErr: ErrMalformedHeader},
		{name: "newline", header: "Bearer a\nb", wantErr: ErrMalformedHeader},
		{name: "padding inside", header: "Bearer a=b", wantErr: ErrMalformedHeader},
		{name: "only padding", header: "Bearer ==", wantErr: ErrMalformedHeader},
		{name: "non-ASCII", header: "Bearer tökén", wantErr: ErrMalformedHeader},
		{name: "unicode scheme fold", header: "Bearer\u00a0x", wantErr: ErrMalformedHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := BearerToken(tt.header)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("BearerToken(%q) error = %v, want %v", tt.header, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("BearerToken(%q) = %q, want %q", tt.header, got, tt.want)
			}
			if err != nil && !isTokenError(err) {
				t.Fatalf("isTokenError(%v) = false", err)
			}
			if rest, ok := strings.CutPrefix(tt.header, "Bearer "); ok && err != nil && len(rest) >= 3 && strings.Contains(err.Error(), rest) {
				t.Fatalf("error %q contains the header value", err)
			}
		})
	}
}
