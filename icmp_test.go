package ultcp

import (
	"testing"

	"github.com/ultcp/ultcp/internal/wire"
)

// icmpTestConn is a Conn with only what parseICMP reads: the stack's
// address 10.77.0.1, the peer 10.77.0.3, ports 40000 → 80.
func icmpTestConn() *Conn {
	s := &Stack{addr: addrA}
	s.ip, _ = wire.AddrFromNetip(addrA)
	c := &Conn{s: s, tuple: fourTuple{lport: 40000, rport: 80}}
	c.rip, _ = wire.AddrFromNetip(addrC)
	c.tuple.rip = c.rip
	return c
}

// A well-formed "fragmentation needed" about the connection parses into
// its type, code, MTU and quoted sequence number.
func TestParseICMPLiteralFragmentationNeeded(t *testing.T) {
	c := icmpTestConn()
	rec := icmpRecord(t, "10.77.0.3", "10.77.0.1", 3, 4, 1280, "10.77.0.1", "10.77.0.3", 40000, 80, 123456)
	typ, code, mtu, seq, ok := c.parseICMP(rec)
	if !ok || typ != 3 || code != 4 || mtu != 1280 || seq != 123456 {
		t.Fatalf("parseICMP = %d, %d, %d, %d, %v; want 3, 4, 1280, 123456, true", typ, code, mtu, seq, ok)
	}
	// Any cut of it is refused (the IPv4 total length no longer matches,
	// or the quote is short).
	for n := 0; n < len(rec); n++ {
		if _, _, _, _, ok := c.parseICMP(rec[:n]); ok {
			t.Fatalf("a record cut to %d of %d bytes was accepted", n, len(rec))
		}
	}
}

// FuzzParseICMPRecord: whatever lies on the ring, parseICMP returns
// without panicking, and what it accepts quotes this connection's ports.
func FuzzParseICMPRecord(f *testing.F) {
	f.Add(icmpRecord(f, "10.77.0.3", "10.77.0.1", 3, 4, 1280, "10.77.0.1", "10.77.0.3", 40000, 80, 7))
	f.Add(icmpRecord(f, "10.77.0.3", "10.77.0.1", 3, 3, 0, "10.77.0.1", "10.77.0.3", 40000, 80, 7))
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1})
	c := icmpTestConn()
	f.Fuzz(func(t *testing.T, rec []byte) {
		_, _, _, _, ok := c.parseICMP(rec)
		if ok && (len(rec) < 20+8+20+8 || rec[9] != 1) {
			t.Fatalf("accepted a record of %d bytes, protocol %d", len(rec), rec[9])
		}
	})
}
