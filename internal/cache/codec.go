package cache

import (
	"errors"
	"time"

	"github.com/authz-sidecar/authz-sidecar/internal/authn"
	"github.com/authz-sidecar/authz-sidecar/internal/roles"
)

// L2 values are a compact binary encoding, hand-written: decoding JSON was
// most of an L2 hit's CPU. A value starts with a format byte, so that a
// reader refuses what it cannot read (a miss) instead of misreading it:
// change formatV1 whenever a value's layout changes (a field added to
// roles.Access, authn.Session or authn.APIKey must be added here too;
// TestCodecsRoundTripEveryField fails until it is).
//
// Layout: strings are a uvarint length and the bytes; lists a uvarint
// count and the elements; times a zigzag varint of Unix seconds and a
// uvarint of nanoseconds plus one (0: the zero time); booleans are bits
// of one flags byte.
const formatV1 = 1

var errFormat = errors.New("cache: unknown or corrupt L2 value")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) {
	for v >= 0x80 {
		e.b = append(e.b, byte(v)|0x80)
		v >>= 7
	}
	e.b = append(e.b, byte(v))
}

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) strs(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(t.Nanosecond()) + 1)
	sec := t.Unix()
	e.uvarint(uint64(sec<<1) ^ uint64(sec>>63)) // zigzag
}

func (e *encoder) grants(gs roles.Grants) {
	e.uvarint(uint64(len(gs)))
	for _, g := range gs {
		e.str(g.Role)
		e.strs(g.Perms)
	}
}

// decoder reads what encoder wrote from one string: every string decoded
// is a substring of it, so a value costs one allocation for all its
// strings. Any inconsistency sets bad; callers check it once at the end.
type decoder struct {
	s   string
	i   int
	bad bool
}

func (d *decoder) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if d.i >= len(d.s) {
			break
		}
		c := d.s[d.i]
		d.i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.bad = true
	return 0
}

// count reads a length or a number of elements, each at least min bytes:
// more than the bytes left is corrupt (and would be a huge allocation).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.i)/uint64(min) {
		d.bad = true
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count(1)
	s := d.s[d.i : d.i+n]
	d.i += n
	return s
}

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *decoder) time() time.Time {
	ns := d.uvarint()
	if ns == 0 {
		return time.Time{}
	}
	z := d.uvarint()
	if ns > 1e9 {
		d.bad = true
	}
	return time.Unix(int64(z>>1)^-int64(z&1), int64(ns-1)).UTC()
}

func (d *decoder) grants() roles.Grants {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	gs := make(roles.Grants, n)
	for i := range gs {
		gs[i].Role = d.str()
		gs[i].Perms = d.strs()
	}
	return gs
}

func (d *decoder) flags() byte {
	if d.i >= len(d.s) {
		d.bad = true
		return 0
	}
	d.i++
	return d.s[d.i-1]
}

// newDecoder checks the format byte; done checks that exactly everything
// was read.
func newDecoder(b []byte) (*decoder, error) {
	if len(b) == 0 || b[0] != formatV1 {
		return nil, errFormat
	}
	return &decoder{s: string(b[1:])}, nil
}

func (d *decoder) done() error {
	if d.bad || d.i != len(d.s) {
		return errFormat
	}
	return nil
}

func bit(b bool, n uint) byte {
	if b {
		return 1 << n
	}
	return 0
}

func encodeAccess(dst []byte, a *roles.Access) []byte {
	e := encoder{b: append(dst, formatV1,
		bit(a.UserFound, 0)|bit(a.Banned, 1)|bit(a.EmailVerified, 2)|bit(a.Anonymous, 3)|bit(a.TwoFactorEnabled, 4)|bit(a.TeamMember, 5))}
	e.time(a.BanExpires)
	e.strs(a.PlatformRoles)
	e.grants(a.Platform)
	e.str(a.OrgID)
	e.strs(a.Roles)
	e.grants(a.Grants)
	e.strs(a.UnknownRoles)
	e.str(a.InvalidRoles)
	e.str(a.TeamID)
	e.time(a.LoadedAt)
	return e.b
}

func decodeAccess(b []byte) (*roles.Access, error) {
	d, err := newDecoder(b)
	if err != nil {
		return nil, err
	}
	f := d.flags()
	a := &roles.Access{
		UserFound: f&1 != 0, Banned: f&2 != 0, EmailVerified: f&4 != 0, Anonymous: f&8 != 0, TwoFactorEnabled: f&16 != 0, TeamMember: f&32 != 0,
	}
	a.BanExpires = d.time()
	a.PlatformRoles = d.strs()
	a.Platform = d.grants()
	a.OrgID = d.str()
	a.Roles = d.strs()
	a.Grants = d.grants()
	a.UnknownRoles = d.strs()
	a.InvalidRoles = d.str()
	a.TeamID = d.str()
	a.LoadedAt = d.time()
	if f>>6 != 0 {
		d.bad = true
	}
	return a, d.done()
}

func encodeSession(dst []byte, s *authn.Session) []byte {
	e := encoder{b: append(dst, formatV1, bit(s.Found, 0))}
	e.str(s.ID)
	e.str(s.UserID)
	e.time(s.ExpiresAt)
	e.str(s.ActiveOrganizationID)
	e.str(s.ActiveTeamID)
	e.str(s.ImpersonatedBy)
	e.time(s.LoadedAt)
	return e.b
}

func decodeSession(b []byte) (*authn.Session, error) {
	d, err := newDecoder(b)
	if err != nil {
		return nil, err
	}
	f := d.flags()
	s := &authn.Session{Found: f&1 != 0}
	s.ID = d.str()
	s.UserID = d.str()
	s.ExpiresAt = d.time()
	s.ActiveOrganizationID = d.str()
	s.ActiveTeamID = d.str()
	s.ImpersonatedBy = d.str()
	s.LoadedAt = d.time()
	if f>>1 != 0 {
		d.bad = true
	}
	return s, d.done()
}

func encodeAPIKey(dst []byte, k *authn.APIKey) []byte {
	e := encoder{b: append(dst, formatV1, bit(k.Found, 0)|bit(k.Enabled, 1)|bit(k.Counted, 2))}
	e.str(k.ID)
	e.str(k.ConfigID)
	e.str(k.ReferenceID)
	e.time(k.ExpiresAt)
	e.strs(k.Permissions)
	e.time(k.LoadedAt)
	return e.b
}

func decodeAPIKey(b []byte) (*authn.APIKey, error) {
	d, err := newDecoder(b)
	if err != nil {
		return nil, err
	}
	f := d.flags()
	k := &authn.APIKey{Found: f&1 != 0, Enabled: f&2 != 0, Counted: f&4 != 0}
	k.ID = d.str()
	k.ConfigID = d.str()
	k.ReferenceID = d.str()
	k.ExpiresAt = d.time()
	k.Permissions = d.strs()
	k.LoadedAt = d.time()
	if f>>3 != 0 {
		d.bad = true
	}
	return k, d.done()
}
