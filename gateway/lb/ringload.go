package lb

import "sync"

// Ring is what RingLoad reads of one connection from the gateway to a
// member: the bytes written into the member's ring and not yet consumed
// (fabric.Conn.RingOccupancy), and the ring's consumer position, the
// total bytes the member has consumed from it since the connection
// opened (the tail pointer; monotonic).
type Ring interface {
	RingOccupancy() int
	RingConsumed() uint64
}

// RingLoad is a Load made from the rings of a member's open
// connections: the gateway adds each connection it opens to the member
// and removes it when the connection ends. It is safe for concurrent
// use (forwarding goroutines add and remove, the scheduler reads in
// Tick); it allocates only when its slice of rings grows.
type RingLoad struct {
	mu    sync.Mutex
	rings []ringEntry
	// done is what removed rings had consumed; last is the largest value
	// Consumed returned, so that it never goes backwards even if a
	// hostile member's tail does.
	done uint64
	last uint64
	// drained is Drained's count, ended Ended's.
	drained, ended uint64
}

// ringEntry is a ring and what Drained saw of it last time: its
// consumer position and what it held.
type ringEntry struct {
	r    Ring
	cons uint64
	occ  int64
	seen bool
}

// drainedSince is what e's ring consumed of the bytes it held at the
// last look (consumed is its position now). A ring is FIFO, so the first
// bytes consumed after a look are the ones it held then.
func (e *ringEntry) drainedSince(consumed uint64) uint64 {
	if !e.seen || consumed < e.cons {
		return 0
	}
	return min(consumed-e.cons, uint64(e.occ))
}

// Add counts a new connection to the member.
func (l *RingLoad) Add(r Ring) {
	l.mu.Lock()
	l.rings = append(l.rings, ringEntry{r: r})
	l.mu.Unlock()
}

// Remove stops counting a connection (closed, reset, or its member
// gone); what it consumed stays in Consumed, so call it while the ring
// can still be read, before closing the connection. Removing a ring that
// was never added does nothing.
func (l *RingLoad) Remove(r Ring) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.rings {
		if e := &l.rings[i]; e.r == r {
			c := r.RingConsumed()
			l.done += c
			l.drained += e.drainedSince(c)
			l.ended++
			last := len(l.rings) - 1
			l.rings[i] = l.rings[last]
			l.rings[last] = ringEntry{}
			l.rings = l.rings[:last]
			return
		}
	}
}

// Occupancy sums the rings' occupancy.
func (l *RingLoad) Occupancy() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, e := range l.rings {
		n += int64(max(e.r.RingOccupancy(), 0))
	}
	return n
}

// Consumed is the bytes consumed from every ring, open or removed.
func (l *RingLoad) Consumed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.done
	for _, e := range l.rings {
		n += e.r.RingConsumed()
	}
	l.last = max(l.last, n)
	return l.last
}

// Drained implements Drainer: per ring, what it consumed since the last
// call of the bytes it held then. Bytes that arrive and are consumed
// between two calls (a handshake the member's stack takes in at once)
// do not count; a request that waited for the application does.
func (l *RingLoad) Drained() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.rings {
		e := &l.rings[i]
		c := e.r.RingConsumed()
		l.drained += e.drainedSince(c)
		e.cons, e.occ, e.seen = c, int64(max(e.r.RingOccupancy(), 0)), true
	}
	return l.drained
}

// Conns is the number of rings counted.
func (l *RingLoad) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rings)
}

// Ended implements Drainer: the rings removed so far.
func (l *RingLoad) Ended() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}
