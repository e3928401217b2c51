package cache

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L2 values start with a format byte, so that a reader refuses what it
// cannot read (a miss) instead of misreading it.
const formatJSON = 'j'

var errFormat = errors.New("cache: unknown L2 value format")

func encodeJSON[V any](dst []byte, v V) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// The values are plain structs of strings, bools and times.
		panic(fmt.Sprintf("cache: encode %T: %v", v, err))
	}
	return append(append(dst, formatJSON), b...)
}

func decodeJSON[V any](b []byte) (*V, error) {
	if len(b) == 0 || b[0] != formatJSON {
		return nil, errFormat
	}
	v := new(V)
	if err := json.Unmarshal(b[1:], v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeAccess(dst []byte, a *roles.Access) []byte   { return encodeJSON(dst, a) }
func decodeAccess(b []byte) (*roles.Access, error)      { return decodeJSON[roles.Access](b) }
func encodeSession(dst []byte, s *authn.Session) []byte { return encodeJSON(dst, s) }
func decodeSession(b []byte) (*authn.Session, error)    { return decodeJSON[authn.Session](b) }
func encodeAPIKey(dst []byte, k *authn.APIKey) []byte   { return encodeJSON(dst, k) }
func decodeAPIKey(b []byte) (*authn.APIKey, error)      { return decodeJSON[authn.APIKey](b) }
