package ultcp

import (
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Control segments that find the send ring full wait until the peer makes
// room, and go out then: the ring's consumer reports the room (fabric
// Conn.Room asked it to), so the progress engine does not poll for it on
// a timer while the ring stays full.
func TestControlSegmentsWaitForRingRoomWithoutPolling(t *testing.T) {
	a, b := pair(t, func(c *Config) { c.RingSize = 16 << 10 })
	// b's side cannot consume while we hold its lock (its engine only
	// try-locks), and its application does not read.
	b.mu.Lock()
	locked := true
	defer func() {
		if locked {
			b.mu.Unlock()
		}
	}()
	// Pure ACKs until the ring is full and one has to wait.
	var ack tcp.Segment
	ack.Hdr.SrcPort, ack.Hdr.DstPort = a.tuple.lport, a.tuple.rport
	ack.Hdr.Flags, ack.Hdr.Window = wire.FlagACK, 1000
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("a 16 KiB ring took 1000 ACKs and is not full")
		}
		a.mu.Lock()
		ack.Hdr.Seq = a.seg.Hdr.Ack // any; b takes them as old ACKs
		a.out = append(a.out[:0], ack)
		a.sendLocked()
		waiting := len(a.pending)
		a.mu.Unlock()
		if waiting > 0 {
			break
		}
	}
	w0 := a.s.stats.engineWakeups.Load()
	time.Sleep(100 * time.Millisecond)
	if w := a.s.stats.engineWakeups.Load() - w0; w > 5 {
		t.Fatalf("%d engine wake-ups in 100 ms while the ring stayed full; want none (no polling)", w)
	}
	// b consumes what waits (its engine can now run it), which makes
	// room: the waiting ACK goes out without anyone touching a.
	b.mu.Unlock()
	locked = false
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	b.Read(make([]byte, 1)) // nothing to read; takes the ACKs in
	waitFor(t, "the waiting ACK to go out", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.pending) == 0
	})
}
