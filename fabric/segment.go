package fabric

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unsafe"
)

// A peer segment is one memfd shared by two nodes. Side 0 is the node that
// made first contact and created it, side 1 the other. Layout (offsets in
// bytes, every part page-aligned):
//
//	0                header page: magic, version, sizes, pids, generations, addresses
//	ctl[0], ctl[1]   control ring from side s to the other: a page for the
//	                 control block, then ctlRingSize bytes of records
//	conns[0], [1]    maxConns pairs of ring control blocks for the
//	                 connections side s opened (512 bytes per pair)
//	ready[0], [1]    hints for side s's event loop: a bitmap with one bit
//	                 per connection (both tables) that its producer sets
//	                 when it rings the doorbell for that connection, and a
//	                 summary bitmap with one bit per bitmap word
//	slab[0], [1]     slabSize bytes each: the data areas of the rings of the
//	                 connections side s opened, allocated by side s alone
//
// Memory is touched only where rings are used: tmpfs allocates a page when
// it is first written, so a large slab costs address space, not memory.
const (
	segMagic = 0x4241465043544c55 // "ULTCPFAB"
	// Version 2: control rings ring the doorbell page's second word
	// (ctlBellOff), data rings the first.
	segVersion = 2
	pageSize   = 4096
	// ctlBellOff is the offset in a node's doorbell page of the word its
	// event loop sleeps on (control rings); the first word is for data
	// rings and Node.Wait. A cache line apart.
	ctlBellOff = 64
	slabAlign  = 64 << 10

	hdrMagic    = 0
	hdrVersion  = 8
	hdrSize     = 16
	hdrCtlRing  = 24
	hdrMaxConns = 32
	hdrSlab     = 40
	hdrPid      = 48 // [2]uint64
	hdrGen      = 64 // [2]uint64
	hdrAddr     = 80 // [2]uint32

	// Bounds a segment's parameters must respect, whoever proposes them.
	minCtlRing  = 4 << 10
	maxCtlRing  = 1 << 20
	maxMaxConns = 1 << 20
	maxSlab     = 1 << 40
)

// params are the sizes the creator chose; the other side validates them
// before mapping anything.
type params struct {
	ctlRingSize uint64
	maxConns    uint64
	slabSize    uint64
}

// layout is where everything is in a segment, computed from params by
// both sides (never read back from shared memory).
type layout struct {
	params
	size       uint64
	ctl        [2]uint64
	conns      [2]uint64
	ready      [2]uint64
	readyWords uint64 // bitmap words per side
	readySums  uint64 // summary words per side
	slab       [2]uint64
}

func roundUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

func makeLayout(p params) (layout, error) {
	if p.ctlRingSize < minCtlRing || p.ctlRingSize > maxCtlRing || bits.OnesCount64(p.ctlRingSize) != 1 {
		return layout{}, fmt.Errorf("fabric: control ring size %d not a power of two in [%d, %d]", p.ctlRingSize, minCtlRing, maxCtlRing)
	}
	if p.maxConns < 1 || p.maxConns > maxMaxConns {
		return layout{}, fmt.Errorf("fabric: %d connections per side not in [1, %d]", p.maxConns, maxMaxConns)
	}
	if p.slabSize < 2*MinRingSize || p.slabSize > maxSlab || p.slabSize%slabAlign != 0 {
		return layout{}, fmt.Errorf("fabric: slab of %d bytes not a multiple of %d in [%d, %d]", p.slabSize, slabAlign, 2*MinRingSize, uint64(maxSlab))
	}
	l := layout{params: p}
	off := uint64(pageSize)
	for s := range 2 {
		l.ctl[s] = off
		off += pageSize + p.ctlRingSize
	}
	for s := range 2 {
		l.conns[s] = off
		off = roundUp(off+p.maxConns*2*ctlBlockSize, pageSize)
	}
	l.readyWords = (2*p.maxConns + 63) / 64
	l.readySums = (l.readyWords + 63) / 64
	for s := range 2 {
		l.ready[s] = off
		off = roundUp(off+(l.readySums+l.readyWords)*8, pageSize)
	}
	off = roundUp(off, slabAlign)
	for s := range 2 {
		l.slab[s] = off
		off += p.slabSize
	}
	l.size = off
	return l, nil
}

// ctlRing returns the control ring from side s.
func (l *layout) ctlRing(base unsafe.Pointer, s int) ringMem {
	return ringMem{
		ctl:  unsafe.Add(base, l.ctl[s]),
		data: unsafe.Add(base, l.ctl[s]+pageSize),
		size: l.ctlRingSize,
	}
}

// connRings returns the two rings of connection id opened by side s: fwd
// carries data from side s, back towards it. block is the offset of the
// pair's data areas inside side s's slab, size each ring's size; the caller
// has validated both.
func (l *layout) connRings(base unsafe.Pointer, s int, id uint32, block, size uint64) (fwd, back ringMem) {
	c := unsafe.Add(base, l.conns[s]+uint64(id)*2*ctlBlockSize)
	d := unsafe.Add(base, l.slab[s]+block)
	fwd = ringMem{ctl: c, data: d, size: size}
	back = ringMem{ctl: unsafe.Add(c, ctlBlockSize), data: unsafe.Add(d, size), size: size}
	return fwd, back
}

// readyHint locates the hint bits, in consumer side s's ready area, of
// the connection key.
func (l *layout) readyHint(base unsafe.Pointer, s int, key connKey) (word *uint64, bit uint64, sum *uint64, sumBit uint64) {
	idx := uint64(key.side)*l.maxConns + uint64(key.id)
	wi := idx / 64
	area := unsafe.Add(base, l.ready[s])
	sum = (*uint64)(unsafe.Add(area, (wi/64)*8))
	word = (*uint64)(unsafe.Add(area, (l.readySums+wi)*8))
	return word, 1 << (idx % 64), sum, 1 << (wi % 64)
}

// checkRingPair validates a ring pair proposed by side s's peer in a
// CONNECT message.
func (l *layout) checkRingPair(id uint32, block, size uint64) error {
	if uint64(id) >= l.maxConns {
		return fmt.Errorf("connection id %d >= %d", id, l.maxConns)
	}
	if size < MinRingSize || size > MaxRingSize || bits.OnesCount64(size) != 1 {
		return fmt.Errorf("ring size %d not a power of two in [%d, %d]", size, MinRingSize, MaxRingSize)
	}
	if block%(2*size) != 0 || block > l.slabSize || 2*size > l.slabSize-block {
		return fmt.Errorf("ring block at %d of %d bytes outside a %d-byte slab", block, 2*size, l.slabSize)
	}
	return nil
}

// writeHeader fills the header page for side 0 (the creator).
func (l *layout) writeHeader(base unsafe.Pointer) {
	h := unsafe.Slice((*byte)(base), pageSize)
	le := binary.LittleEndian
	le.PutUint64(h[hdrMagic:], segMagic)
	le.PutUint32(h[hdrVersion:], segVersion)
	le.PutUint64(h[hdrSize:], l.size)
	le.PutUint64(h[hdrCtlRing:], l.ctlRingSize)
	le.PutUint64(h[hdrMaxConns:], l.maxConns)
	le.PutUint64(h[hdrSlab:], l.slabSize)
}

// writeSide records one side's identity in the header. It is informative
// (for tools and debugging): the other side never trusts these fields, it
// takes the peer's pid from the kernel (SO_PEERCRED).
func writeSide(base unsafe.Pointer, side int, pid int, gen uint64, addr [4]byte) {
	h := unsafe.Slice((*byte)(base), pageSize)
	le := binary.LittleEndian
	le.PutUint64(h[hdrPid+8*side:], uint64(pid))
	le.PutUint64(h[hdrGen+8*side:], gen)
	copy(h[hdrAddr+4*side:hdrAddr+4*side+4], addr[:])
}

// checkHeader verifies, once, that the header the creator wrote matches
// the layout both sides computed from the hello message.
func (l *layout) checkHeader(base unsafe.Pointer) error {
	h := unsafe.Slice((*byte)(base), pageSize)
	le := binary.LittleEndian
	if m, v := le.Uint64(h[hdrMagic:]), le.Uint32(h[hdrVersion:]); m != segMagic || v != segVersion {
		return fmt.Errorf("fabric: segment header magic %#x version %d", m, v)
	}
	if le.Uint64(h[hdrSize:]) != l.size || le.Uint64(h[hdrCtlRing:]) != l.ctlRingSize ||
		le.Uint64(h[hdrMaxConns:]) != l.maxConns || le.Uint64(h[hdrSlab:]) != l.slabSize {
		return fmt.Errorf("fabric: segment header sizes differ from the hello")
	}
	return nil
}

// slabAlloc hands out ring pair blocks and connection ids from this side's
// half of a segment. It lives in private memory: nothing the peer writes
// can confuse it. Blocks are powers of two aligned to their size. Freed ids
// and blocks are reused oldest first, and only once more than quarantine
// of them wait (or nothing fresh is left), so that a call still running on
// a connection that was just closed (a Peek racing its own Close) cannot
// land in the rings of the next connection.
type slabAlloc struct {
	size    uint64
	bump    uint64
	free    [64][]uint64
	ids     []uint32
	nextID  uint32
	maxConn uint32
}

const quarantine = 16

func (a *slabAlloc) allocID() (uint32, bool) {
	if len(a.ids) > quarantine || (a.nextID >= a.maxConn && len(a.ids) > 0) {
		id := a.ids[0]
		a.ids = a.ids[1:]
		return id, true
	}
	if a.nextID >= a.maxConn {
		return 0, false
	}
	a.nextID++
	return a.nextID - 1, true
}

// allocBlock returns the offset of a free block of n bytes (a power of
// two). Freed blocks were given back to the kernel (release), so every
// block reads as zeros.
func (a *slabAlloc) allocBlock(n uint64) (off uint64, ok bool) {
	c := bits.TrailingZeros64(n)
	fresh := roundUp(a.bump, n)
	exhausted := fresh > a.size || n > a.size-fresh
	if len(a.free[c]) > quarantine || (exhausted && len(a.free[c]) > 0) {
		off = a.free[c][0]
		a.free[c] = a.free[c][1:]
		return off, true
	}
	if exhausted {
		return 0, false
	}
	a.bump = fresh + n
	return fresh, true
}

// release queues an id and its block for reuse; the caller has punched the
// block's pages out of the memory file.
func (a *slabAlloc) release(id uint32, off, n uint64) {
	a.ids = append(a.ids, id)
	c := bits.TrailingZeros64(n)
	a.free[c] = append(a.free[c], off)
}
