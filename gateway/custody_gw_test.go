package gateway

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// Custody through a whole gateway (forwarding core, memDevice, a real
// fabric), the node played literally as in forward_test.go.

// custSYNBytes are the options of both SYNs: MSS 1460, NOP NOP
// SACK-permitted, timestamps.
func custSYNBytes() []byte {
	return append(append(mssOpt(1460), 1, 1, 4, 2), tsOpt(1, 0)...)
}

// sackOpt is NOP NOP SACK with one block (RFC 2018 §3).
func sackOpt(left, right uint32) []byte {
	b := []byte{1, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], left)
	binary.BigEndian.PutUint32(b[8:], right)
	return b
}

// recvCustody reads the node's next record and parses it as custody.
func (h *harness) recvCustody(c *fabric.Conn) custody.Message {
	h.t.Helper()
	for range 8 {
		r := h.recv(c)
		if !custody.IsPacket(r) {
			continue // a TCP record of the flow
		}
		src, dst, m, err := custody.ParsePacket(r)
		if err != nil || src != gw4 || dst != node4 {
			h.t.Fatalf("custody record % x: %v (%v -> %v)", r, err, src, dst)
		}
		return m
	}
	h.t.Fatal("no custody record among the node's next 8")
	return custody.Message{}
}

func TestCustodyThroughTheGatewayResendsAndReportsLoss(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Custody = 1 << 20 })
	c := h.dial()
	opts := custSYNBytes()
	synSent := time.Now()
	c.Send(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7000, flags: flagSYN, opts: opts, zeroChecksums: true}.bytes())
	h.devOut()
	h.inject(tun.Packet{Data: seg{src: remote4, dst: node4, sport: 443, dport: 50000, seq: 9000, ack: 7001,
		flags: flagSYN | flagACK, opts: opts}.bytes()})
	// GRANT is on the ring before the SYN-ACK: the node enters custody
	// in SYN-SENT, before its first byte.
	if r := h.recv(c); !custody.IsPacket(r) {
		t.Fatalf("first record after the SYN-ACK came in: % x, want GRANT", r[:min(len(r), 40)])
	} else if _, _, m, err := custody.ParsePacket(r); err != nil || m.Type != custody.Grant {
		t.Fatalf("first record to the node: %v (%v), want GRANT", m, err)
	}
	// The gateway timed the handshake between taking in the SYN and the
	// SYN-ACK: no longer than this.
	handshake := time.Since(synSent)
	if r := h.recv(c); custody.IsPacket(r) || r[33]&flagSYN == 0 {
		t.Fatalf("second record to the node % x, want the SYN-ACK", r[:min(len(r), 40)])
	}
	c.Send(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK,
		opts: tsOpt(2, 1), zeroChecksums: true}.bytes())
	// Five full segments; the outside loses the second.
	const n = 1448
	var sent []byte
	for i := range 5 {
		p := bytes.Repeat([]byte{byte('A' + i)}, n)
		sent = append(sent, p...)
		c.Send(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001 + uint32(i*n), ack: 9001,
			flags: flagACK, opts: tsOpt(3, 1), payload: p, zeroChecksums: true}.bytes())
	}
	got := 0
	for got < len(sent) {
		p := h.devOut()
		if p.Data[9] == wire.ProtoTCP && len(p.Data) > 52 {
			got += p.Len() - 52 // IPv4 20, TCP 20 + timestamps 12
		}
	}
	// The ACK of the first with the last three SACKed: RACK (RFC 8985)
	// deems the second lost at once (three SACKed above, no reordering).
	h.inject(tun.Packet{Data: seg{src: remote4, dst: node4, sport: 443, dport: 50000, seq: 9001, ack: 7001 + n,
		flags: flagACK, opts: append(sackOpt(7001+2*n, 7001+5*n), tsOpt(10, 3)...)}.bytes()})
	p := h.devOut()
	checkOutsideChecksums(t, p)
	b := finishPartial(p)
	th, payload, err := wire.ParseTCP(b[20:])
	if err != nil {
		t.Fatal(err)
	}
	if th.Seq != 7001+n || th.Ack != 9001 || !bytes.Equal(payload, sent[n:2*n]) {
		t.Fatalf("resent seq %d ack %d, %d octets (%q...); want the second segment", th.Seq, th.Ack, len(payload), payload[:min(len(payload), 4)])
	}
	// The ACK covering the resend, an RTT later (the gateway's clock is
	// moved on at least 50 ms, and no less than the handshake took, the
	// custodian's first RTT sample): the loss is real.
	h.advance(max(50*time.Millisecond, handshake))
	h.inject(tun.Packet{Data: seg{src: remote4, dst: node4, sport: 443, dport: 50000, seq: 9001, ack: 7001 + 5*n,
		flags: flagACK, opts: tsOpt(11, 3)}.bytes()})
	m := h.recvCustody(c)
	if m != (custody.Message{Type: custody.Loss, Start: 7001 + n, End: 7001 + 2*n}) {
		t.Fatalf("node got %v, want LOSS{%d,%d}", m, 7001+n, 7001+2*n)
	}
}
