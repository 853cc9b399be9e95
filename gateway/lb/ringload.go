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
	rings []Ring
	// done is what removed rings had consumed; last is the largest value
	// Consumed returned, so that it never goes backwards even if a
	// hostile member's tail does.
	done uint64
	last uint64
}

// Add counts a new connection to the member.
func (l *RingLoad) Add(r Ring) {
	l.mu.Lock()
	l.rings = append(l.rings, r)
	l.mu.Unlock()
}

// Remove stops counting a connection (closed, reset, or its member
// gone); what it consumed stays in Consumed, so call it while the ring
// can still be read, before closing the connection. Removing a ring that
// was never added does nothing.
func (l *RingLoad) Remove(r Ring) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.rings {
		if x == r {
			l.done += r.RingConsumed()
			last := len(l.rings) - 1
			l.rings[i] = l.rings[last]
			l.rings[last] = nil
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
	for _, r := range l.rings {
		n += int64(max(r.RingOccupancy(), 0))
	}
	return n
}

// Consumed is the bytes consumed from every ring, open or removed.
func (l *RingLoad) Consumed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.done
	for _, r := range l.rings {
		n += r.RingConsumed()
	}
	l.last = max(l.last, n)
	return l.last
}

// Conns is the number of rings counted.
func (l *RingLoad) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rings)
}
