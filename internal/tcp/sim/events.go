package sim

import "time"

// event is one packet arriving at an endpoint. Timers are not events: the
// loop asks each engine for its Deadline, which changes with every call.
type event struct {
	at  time.Duration
	seq uint64 // insertion order: ties arrive in the order they were sent
	to  int    // endpoint index
	buf []byte // the encoded IPv4 packet, owned by the event
	// corrupt says the link changed a byte of it (the receiver must
	// find out by the checksum alone; this is for the counters).
	corrupt bool
}

// before orders events by (at, seq), so a run is deterministic.
func before(a, b *event) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

// scheduler is a binary min-heap of events (written out rather than
// container/heap, whose interface boxes every event) with a sequence
// counter and a free list of packet buffers, so the steady state
// allocates nothing.
type scheduler struct {
	q    []event
	seq  uint64
	free [][]byte
}

func (s *scheduler) push(at time.Duration, to int, buf []byte, corrupt bool) {
	s.seq++
	s.q = append(s.q, event{at: at, seq: s.seq, to: to, buf: buf, corrupt: corrupt})
	for i := len(s.q) - 1; i > 0; {
		p := (i - 1) / 2
		if !before(&s.q[i], &s.q[p]) {
			break
		}
		s.q[i], s.q[p] = s.q[p], s.q[i]
		i = p
	}
}

// peek returns the time of the next event, or -1 when there is none.
func (s *scheduler) peek() time.Duration {
	if len(s.q) == 0 {
		return -1
	}
	return s.q[0].at
}

// pop removes and returns the earliest event; the queue must not be empty.
func (s *scheduler) pop() event {
	e := s.q[0]
	n := len(s.q) - 1
	s.q[0] = s.q[n]
	s.q[n] = event{}
	s.q = s.q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && before(&s.q[l], &s.q[m]) {
			m = l
		}
		if r := l + 1; r < n && before(&s.q[r], &s.q[m]) {
			m = r
		}
		if m == i {
			break
		}
		s.q[i], s.q[m] = s.q[m], s.q[i]
		i = m
	}
	return e
}

// buffer returns a packet buffer of length n.
func (s *scheduler) buffer(n int) []byte {
	if k := len(s.free); k > 0 {
		b := s.free[k-1]
		s.free = s.free[:k-1]
		if cap(b) >= n {
			return b[:n]
		}
	}
	return make([]byte, n, max(n, 2048))
}

func (s *scheduler) release(b []byte) {
	if b != nil {
		s.free = append(s.free, b)
	}
}
