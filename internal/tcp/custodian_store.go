package tcp

// custodyStore holds a Custodian's copies of the octets it keeps, indexed
// by sequence number: chunk k of the store covers [base + k·C, base +
// (k+1)·C). Chunks are allocated as octets arrive, only where octets are
// held (a range nobody holds has no chunk), and go back to a small free
// list as the cumulative ACK passes them, so a flow in its steady state
// reuses the same few chunks and allocates nothing. Fixed chunks, unlike
// one ring per flow, give memory back when a flow's window shrinks, and
// make the gateway's accounting (bytes of memory per flow) exact.
type custodyStore struct {
	chunks [][]byte // chunks[head+k] is chunk k; nil where nothing is held
	head   int
	base   uint32
	free   [][]byte // released chunks kept for reuse, at most maxFreeChunks (no pool)
	inUse  int      // non-nil entries of chunks
	pool   *ChunkPool
}

// ChunkPool lends custodians the chunks of their stores, so that the flows
// of a gateway share one supply: an idle flow then keeps no memory, and a
// flow that starts sending takes chunks another flow gave back instead of
// allocating. It keeps at most MaxFree chunks; beyond that, returned
// chunks go to the garbage collector. Like the engine it takes no locks:
// the custodians sharing a pool must be driven by one goroutine.
type ChunkPool struct {
	free    [][]byte
	maxFree int
}

// NewChunkPool returns a pool keeping up to maxFreeBytes of free chunks.
func NewChunkPool(maxFreeBytes int) *ChunkPool {
	return &ChunkPool{maxFree: max(maxFreeBytes/custodyChunk, 1)}
}

// FreeBytes returns the memory the pool holds for reuse.
func (p *ChunkPool) FreeBytes() int { return len(p.free) * custodyChunk }

func (p *ChunkPool) get() []byte {
	if k := len(p.free); k > 0 {
		c := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		return c
	}
	return make([]byte, custodyChunk)
}

func (p *ChunkPool) put(c []byte) {
	if len(p.free) < p.maxFree {
		p.free = append(p.free, c)
	}
}

const (
	// custodyChunk is the chunk size: a few full-sized segments, so a
	// nearly idle flow holds little, and a window of megabytes is a few
	// hundred chunks.
	custodyChunk = 16 << 10
	// maxFreeChunks bounds the chunks a store keeps for reuse: enough for
	// a steady flow, whose ACKs free chunks as fast as new data fills
	// them (a stretch ACK, or a GRO'd train of them, may free a few
	// at once), to allocate nothing.
	maxFreeChunks = 16
	// idleFreeChunks is what a store keeps once nothing is held, so an
	// idle flow costs little.
	idleFreeChunks = 4
)

// n returns the number of chunk slots from base on.
func (s *custodyStore) n() int { return len(s.chunks) - s.head }

// footprint returns the bytes of memory the store holds.
func (s *custodyStore) footprint() int { return (s.inUse + len(s.free)) * custodyChunk }

// fits reports whether [lo, hi) can be stored: the store is empty (it
// restarts at lo), or the range lies within maxCustodyGap of base.
func (s *custodyStore) fits(lo, hi uint32) bool {
	if s.n() == 0 {
		return seqLEQ(hi, lo+maxCustodyGap)
	}
	return seqGEQ(lo, s.base) && seqLEQ(hi, s.base+maxCustodyGap)
}

// write copies p to sequence number seq (fits said yes).
func (s *custodyStore) write(seq uint32, p []byte) {
	if s.n() == 0 {
		s.chunks, s.head, s.base = s.chunks[:0], 0, seq
	}
	off := int(seq - s.base)
	for len(p) > 0 {
		k, i := off/custodyChunk, off%custodyChunk
		for s.n() <= k {
			s.chunks = append(s.chunks, nil)
		}
		c := s.chunks[s.head+k]
		if c == nil {
			c = s.get()
			s.chunks[s.head+k] = c
		}
		m := copy(c[i:], p)
		p = p[m:]
		off += m
	}
}

// appendTo appends the n octets from seq to dst; ok is false (dst
// unchanged) when a chunk of the range is missing.
func (s *custodyStore) appendTo(dst []byte, seq uint32, n int) (_ []byte, ok bool) {
	if n == 0 {
		return dst, true
	}
	off := int64(int32(seq - s.base))
	if s.n() == 0 || off < 0 || off+int64(n) > int64(s.n())*custodyChunk {
		return dst, false
	}
	for o, end := int(off), int(off)+n; o < end; o += custodyChunk - o%custodyChunk {
		if s.chunks[s.head+o/custodyChunk] == nil {
			return dst, false
		}
	}
	for o := int(off); n > 0; {
		c := s.chunks[s.head+o/custodyChunk][o%custodyChunk:]
		m := min(n, len(c))
		dst = append(dst, c[:m]...)
		o += m
		n -= m
	}
	return dst, true
}

// releaseBelow frees the chunks that lie wholly below seq.
func (s *custodyStore) releaseBelow(seq uint32) {
	for s.n() > 0 && seqLEQ(s.base+custodyChunk, seq) {
		s.put(s.chunks[s.head])
		s.chunks[s.head] = nil
		s.head++
		s.base += custodyChunk
	}
	if s.head == len(s.chunks) {
		s.chunks, s.head = s.chunks[:0], 0
	} else if s.head >= 64 && 2*s.head >= len(s.chunks) {
		k := copy(s.chunks, s.chunks[s.head:])
		clear(s.chunks[k:])
		s.chunks, s.head = s.chunks[:k], 0
	}
}

// reset frees every chunk (keeping a few for reuse).
func (s *custodyStore) reset() {
	for i := s.head; i < len(s.chunks); i++ {
		s.put(s.chunks[i])
		s.chunks[i] = nil
	}
	s.chunks, s.head = s.chunks[:0], 0
	if len(s.free) > idleFreeChunks {
		clear(s.free[idleFreeChunks:])
		s.free = s.free[:idleFreeChunks]
	}
}

// release frees everything, the free list too.
func (s *custodyStore) release() {
	s.reset()
	clear(s.free)
	s.free = s.free[:0]
}

func (s *custodyStore) get() []byte {
	s.inUse++
	if s.pool != nil {
		return s.pool.get()
	}
	if k := len(s.free); k > 0 {
		c := s.free[k-1]
		s.free[k-1] = nil
		s.free = s.free[:k-1]
		return c
	}
	return make([]byte, custodyChunk)
}

func (s *custodyStore) put(c []byte) {
	if c == nil {
		return
	}
	s.inUse--
	if s.pool != nil {
		s.pool.put(c)
		return
	}
	if len(s.free) < maxFreeChunks {
		s.free = append(s.free, c)
	}
}
