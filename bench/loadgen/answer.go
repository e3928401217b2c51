package loadgen

import (
	"errors"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// answer is what the generator reads of a CheckResponse. An allow is read
// for its status and the x-auth-user-id it sets, straight from the wire
// bytes; anything else is decoded whole into full, for the failure
// messages. Decoding every allow whole (its 14 header options and the
// metadata Struct, some 60 allocations) would cost the generator more per
// sidecar answer than per noop answer, and on a machine the generator
// shares with the server that cost would be counted against the server.
type answer struct {
	code   int32 // google.rpc.Status.code
	allow  bool  // has ok_response
	userID string
	full   *authv3.CheckResponse // nil for a well-formed allow
}

// The field numbers read (envoy/service/auth/v3/external_auth.proto and
// google/rpc/status.proto); TestAnswerMatchesProto holds them to the
// descriptors through decoding.
const (
	checkResponseStatus protowire.Number = 1
	checkResponseOK     protowire.Number = 3
	statusCode          protowire.Number = 1
	okHeaders           protowire.Number = 2 // repeated HeaderValueOption
	optionHeader        protowire.Number = 1 // HeaderValue
	headerKey           protowire.Number = 1
	headerValue         protowire.Number = 2
)

var errAnswer = errors.New("loadgen: malformed CheckResponse")

// read fills a from a CheckResponse's bytes.
func (a *answer) read(b []byte) error {
	*a = answer{}
	if err := a.scan(b); err != nil || a.code != 0 || !a.allow {
		full := new(authv3.CheckResponse)
		if err := proto.Unmarshal(b, full); err != nil {
			return err
		}
		*a = answer{code: full.GetStatus().GetCode(), allow: full.GetOkResponse() != nil, userID: okHeader(full, headerUserID), full: full}
	}
	return nil
}

// scan reads the fields of an allow; a field it does not know is skipped.
func (a *answer) scan(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case checkResponseStatus:
			return eachVarint(v, statusCode, func(x uint64) { a.code = int32(x) })
		case checkResponseOK:
			a.allow = true
			return eachField(v, func(num protowire.Number, v []byte) error {
				if num != okHeaders {
					return nil
				}
				return eachField(v, func(num protowire.Number, v []byte) error {
					if num != optionHeader {
						return nil
					}
					var key, value []byte
					err := eachField(v, func(num protowire.Number, v []byte) error {
						switch num {
						case headerKey:
							key = v
						case headerValue:
							value = v
						}
						return nil
					})
					if err == nil && string(key) == headerUserID {
						a.userID = string(value)
					}
					return err
				})
			})
		}
		return nil
	})
}

// eachField calls f with every length-delimited field of message b and
// skips the others.
func eachField(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errAnswer
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errAnswer
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errAnswer
		}
		if err := f(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// eachVarint calls f with every varint field numbered num of message b.
func eachVarint(b []byte, num protowire.Number, f func(uint64)) error {
	for len(b) > 0 {
		got, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errAnswer
		}
		b = b[n:]
		if got == num && typ == protowire.VarintType {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errAnswer
			}
			f(x)
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(got, typ, b); n < 0 {
			return errAnswer
		}
		b = b[n:]
	}
	return nil
}
