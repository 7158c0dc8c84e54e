package mb

import (
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// NewID returns a new UUIDv7 (RFC 9562) in its canonical 36-character form.
//
// The first 48 bits are the Unix time in milliseconds and the next 12 bits
// are the sub-millisecond fraction of the clock (RFC 9562 section 6.2,
// method 3), so IDs made by one process sort by creation time at a
// resolution of about 244ns. The remaining 62 bits are random. NewID keeps
// no state and is safe for concurrent use.
func NewID() string {
	return formatID(newIDBytes(time.Now()))
}

func newIDBytes(now time.Time) [16]byte {
	var u [16]byte
	ns := now.UnixNano()
	ms := uint64(ns / 1e6)
	// 12 bits of sub-millisecond precision: fraction of a millisecond * 4096.
	frac := uint64(ns%1e6) * 4096 / 1e6
	r := rand.Uint64()
	u[0] = byte(ms >> 40)
	u[1] = byte(ms >> 32)
	u[2] = byte(ms >> 24)
	u[3] = byte(ms >> 16)
	u[4] = byte(ms >> 8)
	u[5] = byte(ms)
	u[6] = 0x70 | byte(frac>>8)&0x0f
	u[7] = byte(frac)
	u[8] = 0x80 | byte(r>>56)&0x3f
	u[9] = byte(r >> 48)
	u[10] = byte(r >> 40)
	u[11] = byte(r >> 32)
	u[12] = byte(r >> 24)
	u[13] = byte(r >> 16)
	u[14] = byte(r >> 8)
	u[15] = byte(r)
	return u
}

// idLen is the length of an id in its canonical form.
const idLen = 36

func formatID(u [16]byte) string {
	var b [idLen]byte
	formatIDTo(&b, u)
	return string(b[:])
}

func formatIDTo(b *[idLen]byte, u [16]byte) {
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
}
