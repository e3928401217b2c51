package extauthz

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/authz-sidecar/authz-sidecar/internal/authz"
)

// This file is the lean decoder: it reads a CheckRequest's wire bytes for
// the five things a decision uses (method, path, headers, the "route"
// context extension and the request id) without building the message.
// The standard codec allocates every map, peer, certificate and metadata
// struct of the request (about 100 allocations for 12 headers); this one
// makes two.
//
// It must decide exactly as the standard codec would, so it also rejects
// exactly what proto.Unmarshal rejects: it walks every field of the whole
// message, with a schema built from the generated descriptors, and checks
// what the standard decoder checks (wire framing, field numbers, UTF-8 of
// proto3 strings, packed scalars, the recursion limit). Fields it does
// not read are validated and skipped, never stored. Repeated occurrences
// merge as proto merges them: the last scalar wins, map entries
// accumulate, the last entry of a key wins. FuzzWireDecode holds it to the
// standard codec.

// recursionLimit is protowire.DefaultRecursionLimit, which proto.Unmarshal
// applies: each message level, map entry included, takes one.
const recursionLimit = protowire.DefaultRecursionLimit

var (
	errWireDecode    = errors.New("extauthz: cannot parse invalid wire-format data")
	errWireUTF8      = errors.New("extauthz: string field contains invalid UTF-8")
	errWireRecursion = errors.New("extauthz: exceeded maximum recursion depth")
)

// fieldKind is how the walker treats a known field.
type fieldKind uint8

const (
	kindOther   fieldKind = iota // skipped as framed (scalars, bytes, unknown)
	kindString                   // length-delimited, UTF-8 checked when the file says so
	kindBytes                    // length-delimited, captured in entries
	kindMessage                  // recursed into
	kindMap                      // an entry message, recursed into
	kindPackedVarint
	kindPacked32
	kindPacked64
)

// action is what a field on the decision's path does with its value.
type action uint8

const (
	actNone         action = iota
	actID                  // HttpRequest.id
	actMethod              // HttpRequest.method
	actPath                // HttpRequest.path
	actHeaders             // HttpRequest.headers (map)
	actHeaderMap           // HttpRequest.header_map
	actRawHeader           // HeaderMap.headers (repeated HeaderValue)
	actContextExten        // AttributeContext.context_extensions (map)
)

type fieldSchema struct {
	kind fieldKind
	utf8 bool // kindString: proto.Unmarshal rejects invalid UTF-8
	act  action
	// slot, for string and bytes fields of map entries and HeaderValue,
	// is where an entry being read records the value: 0 key, 1 value,
	// 2 raw value; -1 none.
	slot int8
	msg  *msgSchema // kindMessage, kindMap: the message or entry
}

// msgSchema is one message type's fields, indexed by field number.
type msgSchema struct {
	name   protoreflect.FullName
	fields []fieldSchema
}

func (m *msgSchema) field(num protowire.Number) *fieldSchema {
	if int(num) < len(m.fields) {
		return &m.fields[num]
	}
	return nil
}

// wireSchema is the walker's view of CheckRequest.
type wireSchema struct {
	root *msgSchema
	// scratch holds *wireDecoder: at 1.3 KB, one per decode would be the
	// decoder's largest allocation.
	scratch sync.Pool
}

// newWireSchema builds the schema from the generated descriptors and marks
// the fields a decision reads. It fails if the descriptors are not what
// the decoder expects (a go-control-plane upgrade that moved a field).
func newWireSchema() (*wireSchema, error) {
	b := schemaBuilder{seen: map[protoreflect.FullName]*msgSchema{}, refs: map[protoreflect.FullName]int{}}
	root, err := b.message((&authv3.CheckRequest{}).ProtoReflect().Descriptor())
	if err != nil {
		return nil, err
	}
	// The actions belong to one place in the request; a message type
	// reachable twice would apply them in the other place too.
	for _, name := range []protoreflect.FullName{
		"envoy.service.auth.v3.AttributeContext",
		"envoy.service.auth.v3.AttributeContext.Request",
		"envoy.service.auth.v3.AttributeContext.HttpRequest",
		"envoy.config.core.v3.HeaderMap",
	} {
		if b.refs[name] != 1 {
			return nil, fmt.Errorf("extauthz: %s is reachable %d times in CheckRequest, want once", name, b.refs[name])
		}
	}
	marks := []struct {
		msg   protoreflect.FullName
		num   protowire.Number
		kind  fieldKind
		act   action
		slots []int8 // for entries: the slots of fields 1, 2, 3
	}{
		{"envoy.service.auth.v3.AttributeContext.HttpRequest", 1, kindString, actID, nil},
		{"envoy.service.auth.v3.AttributeContext.HttpRequest", 2, kindString, actMethod, nil},
		{"envoy.service.auth.v3.AttributeContext.HttpRequest", 4, kindString, actPath, nil},
		{"envoy.service.auth.v3.AttributeContext.HttpRequest", 3, kindMap, actHeaders, []int8{0, 1}},
		{"envoy.service.auth.v3.AttributeContext.HttpRequest", 13, kindMessage, actHeaderMap, nil},
		{"envoy.config.core.v3.HeaderMap", 1, kindMessage, actRawHeader, []int8{0, 1, 2}},
		{"envoy.service.auth.v3.AttributeContext", 10, kindMap, actContextExten, []int8{0, 1}},
	}
	for _, mk := range marks {
		m := b.seen[mk.msg]
		if m == nil {
			return nil, fmt.Errorf("extauthz: %s is not in CheckRequest", mk.msg)
		}
		f := m.field(mk.num)
		if f == nil || f.kind != mk.kind {
			return nil, fmt.Errorf("extauthz: %s field %d is not the expected kind", mk.msg, mk.num)
		}
		f.act = mk.act
		for i, slot := range mk.slots {
			g := f.msg.field(protowire.Number(i + 1))
			if g == nil || (g.kind != kindString && g.kind != kindBytes) {
				return nil, fmt.Errorf("extauthz: %s field %d: entry field %d is not a string", mk.msg, mk.num, i+1)
			}
			g.slot = slot
		}
	}
	ws := &wireSchema{root: root}
	ws.scratch.New = func() any {
		d := new(wireDecoder)
		d.headers = d.inlineHeaders[:0]
		return d
	}
	return ws, nil
}

type schemaBuilder struct {
	seen map[protoreflect.FullName]*msgSchema
	refs map[protoreflect.FullName]int
}

func (b *schemaBuilder) message(md protoreflect.MessageDescriptor) (*msgSchema, error) {
	b.refs[md.FullName()]++
	if m, ok := b.seen[md.FullName()]; ok {
		return m, nil
	}
	m := &msgSchema{name: md.FullName()}
	b.seen[md.FullName()] = m
	fds := md.Fields()
	maxNum := 0
	for i := range fds.Len() {
		maxNum = max(maxNum, int(fds.Get(i).Number()))
	}
	if maxNum > 1<<12 {
		return nil, fmt.Errorf("extauthz: %s has field number %d; the schema indexes fields by number", md.FullName(), maxNum)
	}
	m.fields = make([]fieldSchema, maxNum+1)
	for i := range fds.Len() {
		fd := fds.Get(i)
		f, err := b.field(fd)
		if err != nil {
			return nil, err
		}
		m.fields[fd.Number()] = f
	}
	return m, nil
}

func (b *schemaBuilder) field(fd protoreflect.FieldDescriptor) (fieldSchema, error) {
	f := fieldSchema{slot: -1}
	switch {
	case fd.IsMap():
		entry, err := b.message(fd.Message())
		if err != nil {
			return f, err
		}
		f.kind, f.msg = kindMap, entry
	case fd.Kind() == protoreflect.MessageKind:
		sub, err := b.message(fd.Message())
		if err != nil {
			return f, err
		}
		f.kind, f.msg = kindMessage, sub
	case fd.Kind() == protoreflect.GroupKind:
		return f, fmt.Errorf("extauthz: %s is a group; the lean decoder does not read groups", fd.FullName())
	case fd.Kind() == protoreflect.StringKind:
		f.kind, f.utf8 = kindString, enforceUTF8(fd)
	case fd.Kind() == protoreflect.BytesKind:
		f.kind = kindBytes
	case fd.IsList():
		// A repeated scalar may come packed; proto.Unmarshal checks every
		// element of a packed run.
		switch fd.Kind() {
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			f.kind = kindPacked32
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			f.kind = kindPacked64
		default:
			f.kind = kindPackedVarint
		}
	}
	return f, nil
}

// enforceUTF8 mirrors the protobuf runtime's rule: proto3 strings are
// checked, proto2 strings are not, editions say per field.
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}

// maxInlineHeaders is how many headers a request holds without growing;
// Envoy typically sends 10 to 20.
const maxInlineHeaders = 24

// wireDecoder is one decode's scratch. Its byte slices point into the
// message being decoded, so it must not outlive Unmarshal: decode copies
// what it keeps into the request's one string before returning.
type wireDecoder struct {
	id, method, path, route []byte
	hasHeaderMap            bool
	headers                 [][2][]byte // the headers map, in wire order
	raw                     [][2][]byte // header_map: key, and value or raw value
	inlineHeaders           [maxInlineHeaders][2][]byte
}

// entry records the string fields of a map entry or HeaderValue.
type entry [3][]byte

// decode reads a CheckRequest's wire bytes into r.
func (s *wireSchema) decode(b []byte, r *wireRequest) error {
	d := s.scratch.Get().(*wireDecoder)
	defer s.release(d)
	if err := d.walk(b, s.root, recursionLimit-1, nil); err != nil {
		return err
	}
	d.finish(r)
	return nil
}

// release forgets everything d points at (the message's buffer goes back
// to gRPC) and returns it to the pool.
func (s *wireSchema) release(d *wireDecoder) {
	clear(d.inlineHeaders[:])
	*d = wireDecoder{inlineHeaders: d.inlineHeaders}
	d.headers = d.inlineHeaders[:0]
	s.scratch.Put(d)
}

// walk validates one message's fields and performs their actions. depth
// is what is left of the recursion limit after this message took its
// level; e, when not nil, receives the fields that have a slot.
func (d *wireDecoder) walk(b []byte, m *msgSchema, depth int, e *entry) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber || typ == protowire.EndGroupType {
			return errWireDecode
		}
		b = b[n:]
		f := m.field(num)
		if f == nil {
			f = &unknownField
		}
		n, err := d.value(b, num, typ, f, depth, e)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// unknownField is the schema of a field number the message does not
// declare. It is never written.
var unknownField = fieldSchema{slot: -1}

// value reads one field's value and returns its length. A known field
// with another wire type than its own is an unknown field to
// proto.Unmarshal, and so it is here: skipped, not read.
func (d *wireDecoder) value(b []byte, num protowire.Number, typ protowire.Type, f *fieldSchema, depth int, e *entry) (int, error) {
	switch f.kind {
	case kindString, kindBytes:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireDecode
		}
		if f.utf8 && !utf8.Valid(v) {
			return 0, errWireUTF8
		}
		switch f.act {
		case actID:
			d.id = v
		case actMethod:
			d.method = v
		case actPath:
			d.path = v
		}
		if e != nil && f.slot >= 0 {
			e[f.slot] = v
		}
		return n, nil
	case kindMessage:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireDecode
		}
		if depth-1 < 0 {
			return 0, errWireRecursion
		}
		switch f.act {
		case actHeaderMap:
			d.hasHeaderMap = true
		case actRawHeader:
			var hv entry
			if err := d.walk(v, f.msg, depth-1, &hv); err != nil {
				return 0, err
			}
			value := hv[1]
			if len(value) == 0 {
				value = hv[2]
			}
			d.raw = append(d.raw, [2][]byte{hv[0], value})
			return n, nil
		}
		return n, d.walk(v, f.msg, depth-1, nil)
	case kindMap:
		// A map entry takes a level before its wire type is looked at.
		if depth-1 < 0 {
			return 0, errWireRecursion
		}
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireDecode
		}
		var kv entry
		if err := d.walk(v, f.msg, depth-1, &kv); err != nil {
			return 0, err
		}
		switch f.act {
		case actHeaders:
			d.headers = append(d.headers, [2][]byte{kv[0], kv[1]})
		case actContextExten:
			if string(kv[0]) == "route" {
				d.route = kv[1]
			}
		}
		return n, nil
	case kindPackedVarint, kindPacked32, kindPacked64:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireDecode
		}
		for len(v) > 0 {
			var m int
			switch f.kind {
			case kindPackedVarint:
				_, m = protowire.ConsumeVarint(v)
			case kindPacked32:
				_, m = protowire.ConsumeFixed32(v)
			default:
				_, m = protowire.ConsumeFixed64(v)
			}
			if m < 0 {
				return 0, errWireDecode
			}
			v = v[m:]
		}
		return n, nil
	}
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, errWireDecode
	}
	return n, nil
}

// finish copies what the decision reads into one string and points r's
// fields into it: the message's buffer goes back to gRPC's pool.
func (d *wireDecoder) finish(r *wireRequest) {
	size := len(d.id) + len(d.method) + len(d.path) + len(d.route)
	for _, kv := range d.headers {
		size += len(kv[0]) + len(kv[1])
	}
	useRaw := len(d.headers) == 0 && d.hasHeaderMap
	if useRaw {
		for _, kv := range d.raw {
			size += len(kv[0]) + len(kv[1])
		}
	}
	var sb strings.Builder
	sb.Grow(size)
	// Each piece is written, then cut from the string once it is whole.
	type cut struct{ from, to int }
	piece := func(v []byte) cut {
		from := sb.Len()
		sb.Write(v)
		return cut{from, sb.Len()}
	}
	id, method, path, route := piece(d.id), piece(d.method), piece(d.path), piece(d.route)
	var inline [2 * maxInlineHeaders]cut
	cuts := inline[:0]
	pairs := d.headers
	if useRaw {
		pairs = d.raw
	}
	for _, kv := range pairs {
		cuts = append(cuts, piece(kv[0]), piece(kv[1]))
	}
	all := sb.String()
	str := func(c cut) string { return all[c.from:c.to] }
	r.Method, r.Path, r.route = str(method), str(path), str(route)
	if useRaw {
		// header_map (encode_raw_headers): repeated names joined with ","
		// as Envoy joins them in the map, so both forms are judged alike.
		m := make(authz.HeaderMap, len(pairs))
		for i := 0; i < len(cuts); i += 2 {
			k, v := str(cuts[i]), str(cuts[i+1])
			if prev, ok := m[k]; ok {
				v = prev + "," + v
			}
			m[k] = v
		}
		r.rawHeaders = m
	} else {
		r.headers = r.inline[:0]
		for i := 0; i < len(cuts); i += 2 {
			r.headers = append(r.headers, wireHeader{name: str(cuts[i]), value: str(cuts[i+1])})
		}
	}
	r.requestID = str(id)
	if r.requestID == "" {
		r.requestID = r.mapHeader("x-request-id")
	}
}

// wireHeader is one entry of the headers map.
type wireHeader struct{ name, value string }

// wireRequest is a CheckRequest as the lean decoder reads it: what a
// decision uses, nothing else.
type wireRequest struct {
	Method, Path string
	route        string
	requestID    string
	// headers is the headers map in wire order; a later entry for a name
	// replaces an earlier one, as in a decoded map.
	headers    []wireHeader
	rawHeaders authz.HeaderMap // set instead when Envoy sent header_map
	inline     [maxInlineHeaders]wireHeader
	// req and answer hold the Check's request and answer (checkWire).
	req    authz.Request
	answer wireAnswer
}

// Get returns the header named name. It scans the entries from the last,
// so the last entry for a name wins as it does in a decoded map; a
// request has few headers, and gRPC's message size limit bounds them.
func (r *wireRequest) Get(name string) string {
	if r.rawHeaders != nil {
		return r.rawHeaders[name]
	}
	return r.mapHeader(name)
}

func (r *wireRequest) mapHeader(name string) string {
	for i := len(r.headers) - 1; i >= 0; i-- {
		if r.headers[i].name == name {
			return r.headers[i].value
		}
	}
	return ""
}

// request is the authz.Request the decision reads.
func (r *wireRequest) request() authz.Request {
	var h authz.Headers = r
	if r.rawHeaders != nil {
		h = r.rawHeaders
	}
	return authz.Request{Method: r.Method, Path: r.Path, Headers: h, RouteName: r.route}
}
