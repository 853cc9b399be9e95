package tcp

// The two byte rings of a connection. Both are allocated lazily, on first
// use, so an idle connection costs no buffer memory, and grow with what
// they hold up to their capacity.

// sendBuf holds the bytes of the send stream from sequence number seq on:
// in retaining mode everything not yet acknowledged, in custody mode only
// what has not yet been emitted.
type sendBuf struct {
	buf  []byte
	head int    // index of the byte numbered seq
	n    int    // bytes held
	seq  uint32 // sequence number of buf[head]
	size int    // capacity: the most bytes held (len(buf), the ring's modulus, grows up to it)
}

func (b *sendBuf) space() int      { return b.size - b.n }
func (b *sendBuf) end() uint32     { return b.seq + uint32(b.n) }
func (b *sendBuf) allocated() bool { return b.buf != nil }

// minSendAlloc is the send ring's first allocation. Its memory grows
// with what it holds, doubling up to size, as the receive ring's does: a
// connection through the gateway may queue 4 MiB (ultcp.DefaultSendBuf), but
// one that writes a request of a few hundred bytes should not allocate
// and zero a mebibyte for it, and one in the gateway's custody never
// queues more than a write.
const minSendAlloc = 4 << 10

// write appends as much of p as fits and returns how much that was.
func (b *sendBuf) write(p []byte) int {
	if len(p) > b.space() {
		p = p[:b.space()]
	}
	if len(p) == 0 {
		return 0
	}
	if need := b.n + len(p); need > len(b.buf) {
		b.grow(need)
	}
	tail := (b.head + b.n) % len(b.buf)
	k := copy(b.buf[tail:], p)
	copy(b.buf, p[k:])
	b.n += len(p)
	return len(p)
}

// grow makes the ring hold at least need bytes (a power of two from
// minSendAlloc, at most size; need never exceeds size, as write trimmed
// to the space), keeping the held bytes in order from index 0.
func (b *sendBuf) grow(need int) {
	n := max(len(b.buf), minSendAlloc)
	for n < need {
		n *= 2
	}
	n = min(n, max(b.size, need))
	nb := make([]byte, n)
	if b.n > 0 {
		first := min(b.n, len(b.buf)-b.head)
		copy(nb, b.buf[b.head:b.head+first])
		copy(nb[first:], b.buf[:b.n-first])
	}
	b.buf, b.head = nb, 0
}

// slice returns the contiguous bytes starting at sequence number s, at most
// max of them; fewer when s lies near the end of the ring (the caller then
// emits a second segment for the rest).
func (b *sendBuf) slice(s uint32, max int) []byte {
	off := int(s - b.seq)
	if off < 0 || off >= b.n || max <= 0 {
		return nil
	}
	if max > b.n-off {
		max = b.n - off
	}
	i := (b.head + off) % len(b.buf)
	if max > len(b.buf)-i {
		max = len(b.buf) - i
	}
	return b.buf[i : i+max]
}

// release forgets every byte numbered before upTo. When upTo lies beyond
// the held bytes the ring empties and restarts at upTo (custody mode emits
// bytes it never held).
func (b *sendBuf) release(upTo uint32) {
	if seqLEQ(upTo, b.seq) {
		return
	}
	if seqGEQ(upTo, b.end()) {
		b.head, b.n, b.seq = 0, 0, upTo
		return
	}
	k := int(upTo - b.seq)
	b.head = (b.head + k) % len(b.buf)
	b.n -= k
	b.seq = upTo
}

// maxOOO bounds the reassembly table: a peer that scatters data into more
// holes than this gets its further out-of-order segments dropped (and
// counted), never more memory. The table starts empty and grows as holes
// appear; 4096 ranges (32 KiB) cover a window of thousands of segments
// with a loss in every other one, as a slow start overshooting a long
// path produces (at 100 Mbit/s and 300 ms, 1024 ranges overflowed): every
// segment dropped for want of a range must be sent again although it
// arrived.
const maxOOO = 4096

// seqRange is the half-open sequence range [start, end).
type seqRange struct{ start, end uint32 }

// recvBuf is the receive window as a ring: n readable bytes from head,
// then the space into which bytes up to the window's right edge are
// written, in order or not. Out-of-order bytes sit at their final position
// and ooo records which ranges are present, so filling a hole never copies.
// Peek lends the reader the first contiguous readable span.
//
// The ring's memory grows with what it holds, not with the window: it
// starts at minRecvAlloc and doubles (up to size) when a segment lands
// beyond its end. A connection that receives a request of a few bytes
// (the connection-rate test: one byte each way) used to allocate and
// zero the whole window, 256 KiB by default, which kept the garbage
// collector running at thousands of connections a second (CRR profile:
// memclr and GC marking ~18 % of the server's CPU).
type recvBuf struct {
	buf  []byte     // the ring: len(buf) is its modulus, at most size
	head int        // index of the first readable byte
	n    int        // readable bytes
	size int        // capacity: the window's bound
	ooo  []seqRange // nooo ranges in use; grown on demand up to maxOOO
	nooo int
}

// minRecvAlloc is the ring's first allocation.
const minRecvAlloc = 4 << 10

func (b *recvBuf) free() int { return b.size - b.n }

// put stores p at offset off beyond the readable bytes. The caller has
// trimmed p to the window, so off+len(p) <= free().
func (b *recvBuf) put(off int, p []byte) {
	if len(p) == 0 {
		return
	}
	if need := b.n + off + len(p); need > len(b.buf) {
		b.resize(need)
	}
	i := (b.head + b.n + off) % len(b.buf)
	k := copy(b.buf[i:], p)
	copy(b.buf, p[k:])
}

// resize makes the ring hold at least need bytes from the head (a power
// of two from minRecvAlloc, at most size; need never exceeds size, as
// put's caller trimmed to the window), keeping the readable and
// out-of-order bytes at their offsets from the head.
func (b *recvBuf) resize(need int) {
	n := minRecvAlloc
	for n < need {
		n *= 2
	}
	n = min(n, max(b.size, need))
	nb := make([]byte, n)
	if len(b.buf) > 0 {
		k := copy(nb, b.buf[b.head:])
		copy(nb[k:], b.buf[:b.head])
	}
	b.buf, b.head = nb, 0
}

// read copies readable bytes into p.
func (b *recvBuf) read(p []byte) int {
	total := 0
	for len(p) > 0 && b.n > 0 {
		s := b.peek()
		k := copy(p, s)
		b.discard(k)
		p = p[k:]
		total += k
	}
	return total
}

// peek returns the first contiguous readable span without consuming it.
func (b *recvBuf) peek() []byte {
	if b.n == 0 {
		return nil
	}
	end := b.head + b.n
	if end > len(b.buf) {
		end = len(b.buf)
	}
	return b.buf[b.head:end]
}

// discard consumes up to k readable bytes and returns how many.
func (b *recvBuf) discard(k int) int {
	if k > b.n {
		k = b.n
	}
	if k <= 0 {
		return 0
	}
	b.head = (b.head + k) % len(b.buf)
	b.n -= k
	if b.n == 0 && b.nooo == 0 {
		// Nothing readable and nothing placed ahead: restart at the
		// front so the next spans are long. With out-of-order bytes in
		// the ring the head must stay, as they sit relative to it.
		b.head = 0
	}
	return k
}

// grow raises the capacity to size bytes; the ring's memory follows when
// bytes land beyond it (put).
func (b *recvBuf) grow(size int) {
	if size > b.size {
		b.size = size
	}
}

// addOOO records that [s, e) arrived ahead of RCV.NXT, merging with
// neighbours. It reports false when the table is full.
func (b *recvBuf) addOOO(s, e uint32) bool {
	// Merge every range that overlaps or touches [s, e).
	j := 0
	for i := 0; i < b.nooo; i++ {
		r := b.ooo[i]
		if seqLT(r.end, s) || seqGT(r.start, e) {
			b.ooo[j] = r
			j++
			continue
		}
		if seqLT(r.start, s) {
			s = r.start
		}
		if seqGT(r.end, e) {
			e = r.end
		}
	}
	b.nooo = j
	if b.nooo == len(b.ooo) {
		if b.nooo >= maxOOO {
			return false
		}
		// Grow the table on demand: most connections never hold more
		// than a few holes, a lossy long path holds hundreds.
		b.ooo = append(b.ooo, make([]seqRange, min(max(len(b.ooo), 4), maxOOO-len(b.ooo)))...)
	}
	// Insert sorted by start.
	i := b.nooo
	for i > 0 && seqGT(b.ooo[i-1].start, s) {
		b.ooo[i] = b.ooo[i-1]
		i--
	}
	b.ooo[i] = seqRange{s, e}
	b.nooo++
	return true
}

// takeOOO removes the ranges that start at or before nxt and returns the
// new RCV.NXT: the end of the contiguous run that begins at nxt.
func (b *recvBuf) takeOOO(nxt uint32) uint32 {
	j := 0
	for i := 0; i < b.nooo; i++ {
		r := b.ooo[i]
		if seqLEQ(r.start, nxt) {
			if seqGT(r.end, nxt) {
				nxt = r.end
			}
			continue
		}
		b.ooo[j] = r
		j++
	}
	b.nooo = j
	return nxt
}
