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
		// msg is a part of the error's text, where two malformations share
		// ErrMalformedHeader.
		msg string
	}{
		{name: "canonical", header: "Bearer x", want: "x"},
		{name: "lower case scheme", header: "bearer x", want: "x"},
		{name: "upper case scheme", header: "BEARER x", want: "x"},
		{name: "several spaces and tabs", header: "Bearer \t  x", want: "x"},
		{name: "jwt", header: "Bearer eyJh.eyJz.c2ln", want: "eyJh.eyJz.c2ln"},
		{name: "b64token padding", header: "Bearer abc+/~==", want: "abc+/~=="},
		{name: "the alphabet's ends", header: "Bearer aAzZ09-._~+/", want: "aAzZ09-._~+/"},
		{name: "just past the letters and digits", header: "Bearer a{", wantErr: ErrMalformedHeader, msg: "invalid characters"},
		{name: "just past the capitals", header: "Bearer A[", wantErr: ErrMalformedHeader, msg: "invalid characters"},
		{name: "just past the digits", header: "Bearer 9:", wantErr: ErrMalformedHeader, msg: "invalid characters"},
		{name: "absent", header: "", wantErr: ErrNoToken},
		{name: "scheme only", header: "Bearer", wantErr: ErrMalformedHeader, msg: "empty bearer token"},
		{name: "scheme only, lower case", header: "bearer", wantErr: ErrMalformedHeader, msg: "empty bearer token"},
		{name: "scheme and space", header: "Bearer ", wantErr: ErrMalformedHeader, msg: "empty bearer token"},
		{name: "scheme and spaces", header: "Bearer   ", wantErr: ErrMalformedHeader, msg: "empty bearer token"},
		{name: "other scheme", header: "Basic x", wantErr: ErrMalformedHeader, msg: "scheme is not Bearer"},
		{name: "other scheme of the same length", header: "Bazaar", wantErr: ErrMalformedHeader, msg: "scheme is not Bearer"},
		{name: "no separator", header: "Bearerx", wantErr: ErrMalformedHeader, msg: "scheme is not Bearer"},
		{name: "prefix of scheme", header: "Bear x", wantErr: ErrMalformedHeader, msg: "scheme is not Bearer"},
		{name: "shorter than the scheme", header: "Bear", wantErr: ErrMalformedHeader, msg: "scheme is not Bearer"},
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
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("BearerToken(%q) error = %v, want it to say %q", tt.header, err, tt.msg)
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
