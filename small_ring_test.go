package ultcp

import (
	"bytes"
	"io"
	"testing"
)

// A ring smaller than the fabric's MSS (64 KiB): segments are clamped to
// what one record of the ring carries, and a write larger than the ring
// goes through whole (it used to fail with EMSGSIZE).
func TestRingSmallerThanMSSClampsSegments(t *testing.T) {
	a, b := pair(t, func(c *Config) { c.RingSize = 4 << 10; c.DMAThreshold = -1 })
	a.SetDeadline(deadline())
	b.SetDeadline(deadline())
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(msg)
		a.CloseWrite()
		errc <- err
	}()
	got, err := io.ReadAll(b)
	if werr := <-errc; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(msg))
	}
	if mss := a.tc.SndMSS(); mss > 4<<10-16-maxHdrLen {
		t.Fatalf("send MSS %d does not fit a 4 KiB ring's record", mss)
	}
}
