package cache

import (
	"reflect"
	"testing"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// fill sets every field of the struct v points to a distinct non-zero
// value (recursively into slices of structs), so that a codec that forgets
// a field fails a round trip.
func fill(v reflect.Value, seed *int) {
	for i := range v.NumField() {
		f := v.Field(i)
		*seed++
		switch {
		case f.Type() == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(time.Unix(int64(1_700_000_000+*seed), int64(*seed)).UTC()))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.String:
			f.SetString(string(rune('a'+*seed%26)) + "é" + string(rune('A'+*seed%26)))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf([]string{"x", "", "leave:approve"}).Convert(f.Type()))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			s := reflect.MakeSlice(f.Type(), 2, 2)
			fill(s.Index(0), seed)
			fill(s.Index(1), seed)
			f.Set(s)
		default:
			panic("fill: a field of kind " + f.Kind().String() + ": teach the codec and this test about it")
		}
	}
}

func roundTrip[V any](t *testing.T, encode func([]byte, *V) []byte, decode func([]byte) (*V, error)) {
	t.Helper()
	var v V
	seed := 0
	fill(reflect.ValueOf(&v).Elem(), &seed)
	b := encode(nil, &v)
	got, err := decode(b)
	if err != nil {
		t.Fatalf("%T: decode: %v", v, err)
	}
	if !reflect.DeepEqual(*got, v) {
		t.Errorf("%T round trip:\n got  %+v\n want %+v", v, *got, v)
	}
	var zero V
	if got, err := decode(encode(nil, &zero)); err != nil || !reflect.DeepEqual(*got, zero) {
		t.Errorf("%T zero round trip: %+v, %v", v, got, err)
	}
	// Every truncation, a trailing byte and another format are refused.
	for n := range len(b) {
		if _, err := decode(b[:n]); err == nil {
			t.Errorf("%T: %d of %d bytes decoded", v, n, len(b))
		}
	}
	if _, err := decode(append(b[:len(b):len(b)], 0)); err == nil {
		t.Errorf("%T: a trailing byte decoded", v)
	}
	other := append([]byte{'{'}, b[1:]...)
	if _, err := decode(other); err == nil {
		t.Errorf("%T: another format decoded", v)
	}
}

// Every field of every cached value survives L2: a field added to one of
// them without being added to the codec fails here.
func TestCodecsRoundTripEveryField(t *testing.T) {
	t.Parallel()
	roundTrip(t, encodeAccess, decodeAccess)
	roundTrip(t, encodeSession, decodeSession)
	roundTrip(t, encodeAPIKey, decodeAPIKey)
	// Times far from now (an API key's expiry in year 3000, before 1970).
	for _, at := range []time.Time{time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(1900, 1, 1, 0, 0, 0, 999_999_999, time.UTC)} {
		k, err := decodeAPIKey(encodeAPIKey(nil, &authn.APIKey{Found: true, ExpiresAt: at}))
		if err != nil || !k.ExpiresAt.Equal(at) {
			t.Errorf("expiry %v: %v, %v", at, k.ExpiresAt, err)
		}
	}
}

// Garbage never decodes into a grant, nor panics.
func FuzzDecodeAccess(f *testing.F) {
	f.Add(encodeAccess(nil, &roles.Access{UserFound: true, OrgID: "o", Roles: []string{"owner"}, Grants: roles.Grants{{Role: "owner", Perms: []string{"a:b"}}}}))
	f.Add([]byte{formatV1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{formatV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAccess(b)
		if err != nil {
			return
		}
		again, err := decodeAccess(encodeAccess(nil, a))
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Errorf("%x decoded to %+v, which does not round-trip: %+v, %v", b, a, again, err)
		}
	})
}
