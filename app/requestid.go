package app

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// Request ids are random UUIDs v4 (unguessable, unlike Fiber's sequential
// ones), made from crypto/rand bytes read in batches: reading 16 bytes per
// request cost a getrandom(2) call each time. Every id takes bytes no other
// id had; a batch belongs to one goroutine at a time (sync.Pool).

const randBatchSize = 4096 // 256 ids a read

type randBatch struct {
	b    [randBatchSize]byte
	used int
}

var randBatches = sync.Pool{New: func() any { return &randBatch{used: randBatchSize} }}

func newRequestID() string {
	rb := randBatches.Get().(*randBatch)
	if rb.used+16 > len(rb.b) {
		_, _ = rand.Read(rb.b[:]) // never fails: crypto/rand crashes the program instead
		rb.used = 0
	}
	var u [16]byte
	copy(u[:], rb.b[rb.used:])
	rb.used += 16
	randBatches.Put(rb)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
