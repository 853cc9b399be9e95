package ultcp

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/timerwheel"
	"github.com/ultcp/ultcp/internal/wire"
)

// Conn is one TCP connection over the fabric; it implements net.Conn.
// One goroutine may Read while another Writes; Close, the deadline setters
// and the option setters may be called from any goroutine.
//
// Locking. mu guards the engine (tc), the fabric conn's receive side and
// its send side. Two exceptions let a goroutine work on the ring without
// holding mu: the poller (polling) spins on the receive side, and a writer
// that must block for ring room or for a DMA completion (txBusy) owns the
// send side. While polling, no one else reads the ring; while txBusy,
// segments others emit wait in pending and go out, in order, after the
// writer's.
type Conn struct {
	s            *Stack
	fc           *fabric.Conn
	laddr, raddr *net.TCPAddr
	rip          wire.IPv4Addr
	lip          wire.IPv4Addr // local address: the stack's, or a service's (service.go)
	heldAt       time.Duration // a service conn in the backlog leaves data in its ring since (service.go)
	tuple        fourTuple

	readMu, writeMu sync.Mutex    // one reader and one writer at a time
	wslow           bool          // under mu: a writer holding writeMu is in writeLocked (see Write)
	polledAt        time.Duration // under mu: the clock as the last spin read it (pollTime)

	mu      sync.Mutex
	tc      *tcp.Conn
	lst     *Listener // while in a listener's backlog (whose mu then guards tc too)
	seg     tcp.Segment
	out     []tcp.Segment
	pending []tcp.Segment // control segments waiting for the send side
	scratch []byte        // DMA payloads that cannot go straight to a reader
	wout    []tcp.Segment // the writer's segments being sent outside mu
	whdr    [maxHdrLen]byte
	tmpl    hdrTemplate // prebuilt headers for segments without options (link.go)

	active             bool // this side dialled (it owns the ring pair in the fabric)
	polling, txBusy    bool
	rxDone             bool  // the ring ended (EOF, error, garbage): no more input
	linkErr            error // why the link failed, reported before the engine's error
	appClosed, wClosed bool
	rClosed            bool // CloseRead
	finished           bool
	linger             int
	orphanAt           time.Duration
	graceArmed         bool
	lazyClose          int8 // closed by the application: grace checks left with the ring unwatched (Close)
	useGen, seenGen    uint32
	maxDMA             int
	minTimer           time.Duration // the shortest timer the engine may set (see touchLocked)
	lent               []byte        // received bytes lent from the ring by Peek (lend.go)
	lentBuf            []byte        // lent bytes copied away by unlendLocked
	loan               loanKind
	// viewOut: a Peek view of the ring (or scratch) is with the
	// application until its next Peek, Discard, Read or Close; copyOut:
	// WriteTo's w.Write is reading such a view. Either way a reader runs
	// without mu on memory the loan holds, so nobody may end the loan
	// (lend.go).
	viewOut, copyOut bool
	wcopy            []byte        // a writer's copy of a view it was given (writeView)
	ip               atomic.Uint32 // ipFields: TOS and TTL of sent packets (ipfields.go)
	urg              urgentState   // urgent marks signalled (urgent.go)
	rw, ww           waiter

	closed atomic.Bool // Close was called (spinners look at it)
	// engineMissed: the progress engine came to run the connection and
	// may have found mu held (see sleep).
	engineMissed atomic.Bool
	rdDeadline   atomic.Int64 // unix nanoseconds, 0: none
	wrDeadline   atomic.Int64

	entry        timerwheel.Entry // under s.mu
	entryAt      atomic.Int64     // entry's deadline, 0: not scheduled
	unregistered bool             // under s.mu
}

// waiter is a goroutine (reader or writer) sleeping until the connection
// changes.
type waiter struct {
	ch     chan struct{}
	asleep bool
	timer  *time.Timer
}

// newConn makes the Conn for a fabric conn. With polled, the caller polls
// the ring itself (a spinning Dial or Accept) and arms it when it stops
// (see fabric.Conn.SetWatchPolled); otherwise the ring is armed at once.
func newConn(s *Stack, fc *fabric.Conn, tc *tcp.Conn, laddr, raddr *net.TCPAddr, polled bool) *Conn {
	c := &Conn{s: s, fc: fc, tc: tc, laddr: laddr, raddr: raddr, linger: -1, maxDMA: 4 << 20, minTimer: s.minTimer(0)}
	// A ring smaller than the fabric's MSS carries smaller segments: one
	// PIO record holds the headers (with options, up to maxHdrLen) and
	// the payload. Both rings of the pair have the same size, so each end
	// clamps its own sending to it.
	tc.ClampMSS(fc.MaxRecord() - maxHdrLen)
	c.rip, _ = wire.AddrFromNetip(fc.RemoteAddr())
	c.lip = s.ip
	lp, rp := tc.Ports()
	c.tuple = fourTuple{lport: lp, rip: c.rip, rport: rp}
	c.entry.Owner = c
	c.ip.Store(uint32(s.cfg.ipFields()))
	c.tmpl.build(s.ip, c.rip, lp, rp, s.cfg.ipFields())
	c.rw.ch = make(chan struct{}, 1)
	c.ww.ch = make(chan struct{}, 1)
	c.out = make([]tcp.Segment, 0, 8)
	if polled {
		fc.SetWatchPolled()
	} else {
		fc.SetWatch(true)
	}
	return c
}

// LocalAddr returns the local address (a *net.TCPAddr).
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the remote address (a *net.TCPAddr).
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// ---- reading --------------------------------------------------------------

// Read reads data from the connection. In-order data that arrives while
// nothing is buffered goes straight from the ring into p.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.mu.Lock()
	c.viewBackLocked()
	c.polledAt = 0 // only a spin of this Read may stand for the clock
	n, err := c.readLocked(p)
	c.mu.Unlock()
	if err != nil {
		return n, opError("read", c.laddr, c.raddr, err)
	}
	return n, nil
}

func (c *Conn) readLocked(p []byte) (int, error) {
	for {
		if c.appClosed {
			return 0, net.ErrClosed
		}
		if c.rClosed {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		// The clock is read only where something happens: a Read that
		// finds nothing and spins must not pay for a reading before the
		// one it takes when the record arrives.
		if len(c.lent) > 0 {
			now := c.s.now()
			n := copy(p, c.lent)
			c.discardLentLocked(now, n)
			c.touchLocked(now)
			return n, nil
		}
		if c.tc.Readable() > 0 {
			n, _ := c.tc.Read(p)
			c.afterReadLocked(c.s.now())
			return n, nil
		}
		if !c.polling && !c.rxDone && c.fc.Readable() {
			now := c.pollTime()
			if n := c.drainLocked(now, p, false); n > 0 {
				// The bytes went straight into p, counted as read by
				// the engine's input itself (InputDirect), whose output
				// already sent what that made due: unlike a read from
				// the receive buffer, this one opens no window, so no
				// second Output (TestDirectReadLeavesNothingToOutput).
				c.touchLocked(now)
				return n, nil
			}
			if len(c.lent) > 0 || c.tc.Readable() > 0 {
				continue // a DMA record larger than p was lent from scratch
			}
		}
		err := c.readErrLocked()
		if err == nil && !expired(&c.rdDeadline) {
			c.wait(&c.rw, &c.rdDeadline, nil)
			continue
		}
		c.touchLocked(c.s.now())
		if err != nil {
			return 0, err
		}
		return 0, errTimeout
	}
}

// afterReadLocked sends the window update reading may have made due.
func (c *Conn) afterReadLocked(now time.Duration) {
	c.out = c.tc.Output(now, c.out[:0])
	c.sendLocked()
	c.touchLocked(now)
}

// readErrLocked is what Read returns when nothing is readable: nil while
// data may still come, io.EOF after the peer's FIN, or the error that
// ended the connection.
func (c *Conn) readErrLocked() error {
	if c.linkErr != nil {
		return c.linkErr
	}
	_, err := c.tc.Peek()
	if err == nil && c.rxDone {
		return io.EOF
	}
	return err
}

// ---- writing --------------------------------------------------------------

// Write writes p to the connection and returns when every byte has been
// handed to the fabric: copied into the peer's ring (PIO) or, for a write
// of at least Config.DMAThreshold bytes, pulled by the peer straight from
// p (DMA). Nothing is kept for retransmission: the fabric does not lose.
func (c *Conn) Write(p []byte) (int, error) {
	// The fast path holds mu throughout, so it needs no writeMu: it only
	// has to stay out while a writer that lets go of mu is inside
	// (wslow), and that one holds writeMu against other such writers.
	c.mu.Lock()
	if !c.wslow {
		if done, err := c.writeFastLocked(p); done {
			c.mu.Unlock()
			if err != nil {
				return 0, opError("write", c.laddr, c.raddr, err)
			}
			return len(p), nil
		}
	}
	c.mu.Unlock()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	c.wslow = true
	n, err := c.writeLocked(p, nil)
	c.wslow = false
	c.mu.Unlock()
	if err != nil {
		return n, opError("write", c.laddr, c.raddr, err)
	}
	return n, nil
}

// writeFastLocked is Write's fast path: a small write on a connection
// with nothing unusual going on leaves as one segment through the
// engine's WriteFast, and the clock is read only after the segment is in
// the ring (tcp.Conn.WriteFast says why). done is false, with nothing
// changed, when writeLocked must do the work: input waiting on the ring
// (the ACKs it carries come first), a deadline, a send side busy or
// closed, a DMA-sized write, or anything the engine's fast path declines.
func (c *Conn) writeFastLocked(p []byte) (done bool, err error) {
	n := tmplLen + len(p)
	if c.appClosed || c.wClosed || c.linkErr != nil || c.polling || c.rxDone || c.txBusy ||
		len(c.pending) > 0 || c.wrDeadline.Load() != 0 || c.fc.Readable() ||
		(c.s.cfg.DMAThreshold > 0 && len(p) >= c.s.cfg.DMAThreshold) ||
		n > c.fc.MaxRecord() || !fits(c.fc, n) {
		return false, nil
	}
	h, ok := c.tc.WriteFastHdr(p)
	if !ok {
		return false, nil
	}
	// The engine has sent the segment; the ring has room for it (fits),
	// so Reserve does not wait.
	buf, err := c.fc.Reserve(n)
	if err == nil {
		if ipf := c.ip.Load(); ipf != c.tmpl.ipf {
			c.tmpl.build(c.local(), c.rip, c.tuple.lport, c.tuple.rport, ipFields(ipf))
		}
		c.tmpl.encodeData(buf, &h, len(p))
		copy(buf[tmplLen:], p)
		if cp := c.s.cfg.Capture; cp != nil {
			cp(true, buf[:tmplLen], buf[tmplLen:n])
		}
		err = c.fc.Commit(n)
	}
	now := c.s.now()
	c.tc.SentAt(now)
	if err != nil {
		return true, c.txFailedLocked(err)
	}
	c.touchLocked(now)
	return true, nil
}

// writeLocked writes p. If p is a view lent by another connection src to
// its WriteTo (writeView), the view is copied away before any wait.
func (c *Conn) writeLocked(p []byte, src *Conn) (int, error) {
	total := 0
	for {
		if c.appClosed {
			return total, net.ErrClosed
		}
		if c.wClosed {
			return total, errWriteClosed
		}
		now := c.s.now()
		if !c.polling && !c.rxDone {
			c.drainLocked(now, nil, false)
		}
		if len(p) == 0 {
			c.touchLocked(now)
			return total, nil
		}
		if c.linkErr != nil {
			return total, c.linkErr
		}
		if expired(&c.wrDeadline) {
			c.touchLocked(now)
			return total, errTimeout
		}
		n, out, err := c.tc.WriteDirect(now, p, c.out[:0])
		c.out = out
		if err != nil {
			c.sendLocked()
			return total, err
		}
		if n > 0 {
			dma := c.s.cfg.DMAThreshold > 0 && n >= c.s.cfg.DMAThreshold && c.fc.DMA()
			if err := c.emitLocked(p[:n], dma); err != nil {
				return total, err
			}
			p = p[n:]
			total += n
			if len(p) == 0 {
				c.touchLocked(now)
				return total, nil
			}
			continue
		}
		c.sendLocked()
		if src != nil {
			// p is a view of src's ring: copy it away before waiting, so
			// that src's writer need not wait for us (writeView).
			p = c.detachViewLocked(p, src)
			src = nil
			continue
		}
		if c.loan.blocksInput() {
			// The ACK we wait for is behind the lent record (see Peek).
			if c.viewOut || c.copyOut {
				// A reader is using the view: wait until it gives it
				// back (lend.go), then end the loan.
				c.sleep(&c.ww, &c.wrDeadline, nil)
				continue
			}
			c.unlendLocked()
			continue
		}
		c.wait(&c.ww, &c.wrDeadline, nil)
	}
}

// emitLocked sends the segments WriteDirect emitted (c.out), whose data
// lies in data. Small writes go to the ring under mu when it has room;
// otherwise the writer takes the send side (txBusy), lets go of mu and
// blocks in the fabric for room or for the DMA completion.
func (c *Conn) emitLocked(data []byte, dma bool) error {
	c.tsoLocked() // tso.go
	i := 0
	if !dma && !c.txBusy && len(c.pending) == 0 {
		for ; i < len(c.out); i++ {
			seg := &c.out[i]
			if !fits(c.fc, segLen(seg)) {
				break
			}
			if err := c.putSeg(seg); err != nil {
				c.resetOutLocked()
				return c.txFailedLocked(err)
			}
		}
		if i == len(c.out) {
			c.resetOutLocked()
			return nil
		}
	}
	c.wout = append(c.wout[:0], c.out[i:]...)
	c.resetOutLocked()
	c.txBusy = true
	c.mu.Unlock()
	err := c.sendOutside(data, dma, c.maxDMA)
	c.mu.Lock()
	c.txBusy = false
	clear(c.wout)
	if err != nil {
		return c.txFailedLocked(err)
	}
	c.flushPendingLocked()
	c.maybeFinishLocked()
	return nil
}

// sendOutside sends c.wout without holding mu (the caller set txBusy).
// With dma, runs of data segments are coalesced into one record whose
// payload the peer pulls from data (link.go: BIG TCP).
func (c *Conn) sendOutside(data []byte, dma bool, maxDMA int) error {
	segs := c.wout
	for i := 0; i < len(segs); i++ {
		seg := &segs[i]
		if !dma || len(seg.Payload) == 0 {
			if err := c.putSeg(seg); err != nil {
				return err
			}
			continue
		}
		// Coalesce the run of contiguous data segments starting here,
		// up to maxDMA bytes in one record (never more than the peer's
		// window, which its length check on DMA records accepts). The
		// payloads are slices of data (WriteDirect in custody mode); one
		// that is not goes by PIO.
		start := cap(data) - cap(seg.Payload)
		end := start + len(seg.Payload)
		if start < 0 || end > len(data) || &data[start] != &seg.Payload[0] {
			if err := c.putSeg(seg); err != nil {
				return err
			}
			continue
		}
		hdr := seg.Hdr
		j := i + 1
		for ; j < len(segs); j++ {
			nx := &segs[j]
			if len(nx.Payload) == 0 || cap(data)-cap(nx.Payload) != end || end-start+len(nx.Payload) > maxDMA {
				break
			}
			end += len(nx.Payload)
			hdr.Flags |= nx.Hdr.Flags & (wire.FlagPSH | wire.FlagFIN)
		}
		i = j - 1
		payload := data[start:end]
		n, err := encodeHeaders(c.whdr[:], c.lip, c.rip, ipFields(c.ip.Load()), &hdr, len(payload))
		if err != nil {
			return err
		}
		if cp := c.s.cfg.Capture; cp != nil {
			cp(true, c.whdr[:n], payload)
		}
		if err := c.fc.SendDMA(c.whdr[:n], payload); err != nil {
			return err
		}
		c.s.stats.dmaRecords.Add(1)
	}
	return nil
}

// putSeg writes seg as one PIO record: headers encoded in place in the
// ring, the payload copied behind them (the one copy of PIO).
func (c *Conn) putSeg(seg *tcp.Segment) error {
	if noOptions(&seg.Hdr.Options) {
		// The common case: the prebuilt headers, patched (link.go).
		n := tmplLen + len(seg.Payload)
		buf, err := c.fc.Reserve(n)
		if err != nil {
			return err
		}
		if ipf := c.ip.Load(); ipf != c.tmpl.ipf {
			c.tmpl.build(c.local(), c.rip, c.tuple.lport, c.tuple.rport, ipFields(ipf))
		}
		c.tmpl.encodeFast(buf, &seg.Hdr, len(seg.Payload))
		copy(buf[tmplLen:], seg.Payload)
		if cp := c.s.cfg.Capture; cp != nil {
			cp(true, buf[:tmplLen], buf[tmplLen:n])
		}
		return c.fc.Commit(n)
	}
	hl := ipHdrLen + seg.Hdr.EncodedLen()
	buf, err := c.fc.Reserve(hl + len(seg.Payload))
	if err != nil {
		return err
	}
	if _, err := encodeHeaders(buf, c.lip, c.rip, ipFields(c.ip.Load()), &seg.Hdr, len(seg.Payload)); err != nil {
		return err
	}
	copy(buf[hl:], seg.Payload)
	if cp := c.s.cfg.Capture; cp != nil {
		cp(true, buf[:hl], buf[hl:hl+len(seg.Payload)])
	}
	return c.fc.Commit(hl + len(seg.Payload))
}

// segLen is the length of seg's PIO record: headers and payload.
func segLen(seg *tcp.Segment) int {
	if noOptions(&seg.Hdr.Options) {
		return tmplLen + len(seg.Payload)
	}
	return ipHdrLen + seg.Hdr.EncodedLen() + len(seg.Payload)
}

// fits reports whether a record of n bytes certainly goes into fc's send
// ring without waiting: the occupancy the consumer published is an upper
// bound, and a record may need a skip of up to its own size at the end of
// the lap.
func fits(fc *fabric.Conn, n int) bool {
	rec := 8 + (n+7)&^7
	return fc.RingSize()-fc.RingOccupancy() >= 2*rec+8
}

// sendLocked sends c.out: control segments from input, timers, reads and
// Close. A pure ACK followed by another segment that acknowledges is left
// out (RFC 9293 MUST-58: one ACK for a batch of segments). What cannot go
// now waits in pending.
func (c *Conn) sendLocked() {
	c.tsoLocked() // tso.go
	out := c.out
	for i := range out {
		seg := &out[i]
		if seg.Hdr.Flags == wire.FlagACK && len(seg.Payload) == 0 && i+1 < len(out) && out[i+1].Hdr.Flags&wire.FlagACK != 0 {
			continue
		}
		if seg.Hdr.Flags&wire.FlagRST != 0 {
			c.s.stats.resetsOut.Add(1)
		}
		if c.txBusy || len(c.pending) > 0 || !c.fc.Room(segLen(seg)) {
			// Room, when it says no, also asks the peer to report the
			// room it makes: the progress engine then sends what waits
			// here (flushPendingLocked), with no timer to retry on.
			c.queueLocked(seg)
			continue
		}
		if err := c.putSeg(seg); err != nil {
			c.txFailedLocked(err)
			break
		}
	}
	c.out = out
	c.resetOutLocked()
}

// resetOutLocked empties c.out. It drops the payload references, the only
// pointers a Segment holds, so that the spare capacity keeps no caller's
// buffer alive; clearing whole segments (about 100 bytes each, most of it
// SACK blocks) costs more and gains nothing: the engine appends whole
// Segment values, so it never reads the stale headers.
func (c *Conn) resetOutLocked() {
	for i := range c.out {
		c.out[i].Payload = nil
	}
	c.out = c.out[:0]
}

// queueLocked keeps a copy of seg for later. Only control segments reach
// here (data is sent by the writer itself), but a payload is copied all
// the same, since its memory belongs to someone else.
func (c *Conn) queueLocked(seg *tcp.Segment) {
	q := *seg
	if len(q.Payload) > 0 {
		q.Payload = append([]byte(nil), q.Payload...)
	}
	c.pending = append(c.pending, q)
}

// flushPendingLocked sends the queued control segments the ring has room
// for. When it stops for want of room, Room has asked the peer to report
// room as it makes it, and the progress engine comes back here then.
func (c *Conn) flushPendingLocked() {
	if c.txBusy {
		return
	}
	i := 0
	for ; i < len(c.pending); i++ {
		seg := &c.pending[i]
		if !c.fc.Room(segLen(seg)) {
			break
		}
		if err := c.putSeg(seg); err != nil {
			c.txFailedLocked(err)
			i = len(c.pending)
			break
		}
	}
	n := copy(c.pending, c.pending[i:])
	clear(c.pending[n:])
	c.pending = c.pending[:n]
}

// txFailedLocked handles a fabric send error: the peer is gone or the ring
// broke, so the connection is reset.
func (c *Conn) txFailedLocked(err error) error {
	if c.appClosed && !c.txBusy {
		return net.ErrClosed
	}
	c.failLinkLocked(err)
	if c.linkErr != nil {
		return c.linkErr
	}
	if e := c.tc.Err(); e != nil {
		return e
	}
	return err
}

// ---- input ------------------------------------------------------------

// drainLocked processes the records waiting in the ring, delivering
// in-order data straight into dst while nothing is buffered, and returns
// how many bytes went to dst. With arm (the progress engine) it reads until
// the ring is empty, which arms the fabric watch; otherwise it stops when
// dst is full and never arms.
func (c *Conn) drainLocked(now time.Duration, dst []byte, arm bool) int {
	delivered, processed := 0, 0
	for !c.rxDone && !c.loan.blocksInput() {
		if c.lst != nil && c.holdInRing(now) {
			break
		}
		var r fabric.Record
		var err error
		if arm {
			r, err = c.fc.PeekNoWait()
		} else {
			if !c.fc.Readable() {
				break
			}
			// Readable promised a record or an error, so Peek returns
			// at once, by its fast path.
			r, err = c.fc.Peek()
		}
		if err == fabric.ErrWouldBlock {
			break
		}
		processed++
		if err != nil {
			c.rxFailedLocked(now, err)
			break
		}
		delivered += c.inputRecordLocked(now, &r, dst[delivered:], false)
		if !arm && len(dst) > 0 && delivered == len(dst) {
			break
		}
	}
	if processed > 0 {
		if c.lip != c.s.ip {
			c.fc.PublishConsumed() // a service member's progress, for the gateway (service.go)
		}
		if len(c.out) > 0 {
			c.sendLocked()
		}
		c.wakeWaitersLocked()
		if c.lst != nil {
			if st := c.tc.State(); st != tcp.SynReceived {
				c.lst.signal()
			}
		}
	}
	return delivered
}

// inputRecordLocked runs TCP input for one record and releases it.
func (c *Conn) inputRecordLocked(now time.Duration, r *fabric.Record, dst []byte, lend bool) int {
	seg := &c.seg
	var inline []byte
	ok := false
	if !r.DMA {
		inline, ok = c.tmpl.decodeFast(r.Data, seg) // the common case (link.go)
	}
	if !ok {
		var err error
		inline, err = decodeRecord(r.Data, len(r.Data)+r.DMALen, c.rip, c.lip, seg)
		if err == nil && r.DMA && len(inline) > 0 {
			err = errDMAInline
		}
		if err == nil && r.DMA && r.DMALen > c.s.cfg.MaxRecvBuf+fabricMSS {
			err = errBadLength // more than any window we offer
		}
		if err != nil {
			if err == errICMP && !r.DMA {
				c.icmpLocked(now, r.Data) // checked, counted, handed to the engine (icmp.go)
				c.fc.Release()
				return 0
			}
			if err == errCustody && !r.DMA {
				c.custodyLocked(now, r.Data) // checked, counted, acted on (custody.go)
				c.fc.Release()
				return 0
			}
			c.fc.Release()
			c.garbageLocked(now)
			return 0
		}
		if seg.Hdr.DstPort != c.tuple.lport || seg.Hdr.SrcPort != c.tuple.rport {
			// Not this connection's ports: a segment for no connection
			// (RFC 9293 §3.10.7.1), answered with a reset.
			c.s.stats.noConn.Add(1)
			c.out = tcp.ResetFor(seg, c.out)
			c.fc.Release()
			return 0
		}
	}
	placed := 0
	if r.DMA {
		n := r.DMALen
		var buf []byte
		if n <= len(dst) && c.tc.Readable() == 0 {
			buf, placed = dst[:n], n // pulled straight into the reader's buffer
		} else {
			if cap(c.scratch) < n {
				c.scratch = make([]byte, n)
			}
			buf = c.scratch[:n]
			if (lend || len(dst) > 0) && c.tc.Readable() == 0 {
				// Lent from the scratch buffer (one copy, the pull) rather
				// than copied on into the receive buffer.
				placed, lend = n, true
			}
		}
		for got := 0; got < n; {
			k, err := c.fc.Pull(buf[got:])
			if err != nil || k == 0 {
				c.fc.Release()
				if err == nil {
					c.garbageLocked(now)
				} else {
					c.rxFailedLocked(now, err)
				}
				return 0
			}
			got += k
		}
		seg.Payload = buf
	} else {
		seg.Payload = inline
		if lend && len(inline) > 0 && c.tc.Readable() == 0 {
			placed = len(inline) // lent from the ring, not copied (see lendLocked)
		} else if len(inline) > 0 && len(dst) > 0 && c.tc.Readable() == 0 {
			placed = copy(dst, inline)
		}
	}
	if cp := c.s.cfg.Capture; cp != nil {
		cp(false, r.Data[:len(r.Data)-len(inline)], seg.Payload)
	}
	if seg.Hdr.Flags&wire.FlagRST != 0 {
		c.s.stats.resetsIn.Add(1)
	}
	k, out := c.tc.InputDirect(now, seg, placed, c.out)
	c.out = out
	if urgentFlag(seg.Hdr.Flags) {
		c.urgentLocked() // MUST-32 (urgent.go)
	}
	seg.Payload = nil
	if lend && k > 0 {
		if r.DMA {
			c.lent, c.loan = c.scratch[:k], loanScratch
			c.fc.Release()
			return 0 // nothing went to dst: the reader takes it from the loan
		}
		c.lent, c.loan = inline[:k], loanRing // the record stays in the ring until Discard
		return 0
	}
	c.fc.Release()
	return k
}

// garbageLocked resets the connection after a record that is not a valid
// packet for it: the peer broke the protocol, so nothing more is read from
// its ring; it gets a RST, and this connection's calls ECONNRESET.
func (c *Conn) garbageLocked(now time.Duration) {
	c.s.stats.badRecords.Add(1)
	c.out = c.tc.Abort(now, c.out)
	c.rxDone = true
	if c.linkErr == nil {
		c.linkErr = syscall.ECONNRESET
	}
}

// rxFailedLocked handles the end of the ring: io.EOF once the peer closed
// its side (an orderly end if TCP had finished, a reset otherwise), or a
// fabric error (the peer died or broke the ring).
func (c *Conn) rxFailedLocked(now time.Duration, err error) {
	c.rxDone = true
	if err == io.EOF {
		switch c.tc.State() {
		case tcp.Closed, tcp.TimeWait:
			return
		}
		err = syscall.ECONNRESET
	}
	c.failLinkLocked(err)
}

// failLinkLocked ends the connection because its link failed: the errno
// the fabric error carries (ECONNRESET for a dead peer or a broken ring)
// becomes the connection's error, unless TCP had finished already.
func (c *Conn) failLinkLocked(err error) {
	c.rxDone = true
	if err == net.ErrClosed {
		return
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		errno = syscall.ECONNRESET
	}
	switch c.tc.State() {
	case tcp.Closed, tcp.TimeWait:
	default:
		c.tc.ReportFailure(errno)
	}
	c.wakeWaitersLocked()
}

// ---- waiting ------------------------------------------------------------

var (
	errTimeout    = os.ErrDeadlineExceeded
	errWouldBlock = fabric.ErrWouldBlock
)

func expired(dl *atomic.Int64) bool {
	d := dl.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

// wait lets the calling goroutine (holding mu) wait for the connection to
// change: first it spins on the ring for the spin budget (unless another
// goroutine already polls it), then it arms the ring and sleeps until the
// progress engine, the other goroutine, Close or a deadline wakes it.
// The caller re-checks everything afterwards.
func (c *Conn) wait(w *waiter, dl *atomic.Int64, done <-chan struct{}) {
	if !c.polling && !c.rxDone && c.s.cfg.SpinBudget > 0 {
		c.polling = true
		c.mu.Unlock()
		got, at := c.spin(dl, done)
		c.mu.Lock()
		c.polling = false
		if got {
			c.polledAt = at
			return
		}
		// The other goroutine may have gone to sleep while we polled:
		// it is woken below by whoever processes the ring next.
	}
	if !c.polling && !c.rxDone {
		// Arm the fabric watch (PeekNoWait on an empty watched ring), so
		// that the peer's next record reaches the progress engine.
		if _, err := c.fc.PeekNoWait(); err != fabric.ErrWouldBlock {
			return // a record (or an error) is there: the caller drains it
		}
	}
	c.sleep(w, dl, done)
}

// sleep lets the calling goroutine (holding mu) sleep until it is woken
// (wakeWaitersLocked), the deadline passes or done fires.
func (c *Conn) sleep(w *waiter, dl *atomic.Int64, done <-chan struct{}) {
	var tch <-chan time.Time
	if d := dl.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return
		}
		if w.timer == nil {
			w.timer = time.NewTimer(left)
		} else {
			w.timer.Reset(left)
		}
		tch = w.timer.C
	}
	w.asleep = true
	c.s.stats.sleeps.Add(1)
	c.mu.Unlock()
	// The progress engine may have come for this connection (a record
	// rang the doorbell) while we held mu, and gone away (engineRun
	// only try-locks): then nobody would wake us before its retry tick,
	// a millisecond on. It says so in engineMissed before it tries the
	// lock; we look after letting go of it: one of us sees the other.
	if !c.engineMissed.Swap(false) {
		select {
		case <-w.ch:
		case <-tch:
		case <-done:
		}
	}
	c.mu.Lock()
	w.asleep = false
	if w.timer != nil {
		w.timer.Stop()
	}
	select { // a wake-up that raced with the timer
	case <-w.ch:
	default:
	}
}

// spin polls the ring (which the caller owns as the poller) for the spin
// budget and reports whether to return to the caller at once: a record is
// there, the connection was closed, the deadline passed or done fired.
//
// It also returns the stack's time as last read while polling, at most
// spinClockEvery polls before the record was seen (0 if none was read):
// the reader takes it as the record's arrival time (pollTime), which
// spares the clock read (tens of nanoseconds) between seeing the record
// and answering it.
func (c *Conn) spin(dl *atomic.Int64, done <-chan struct{}) (bool, time.Duration) {
	budget := c.s.cfg.SpinBudget
	var start time.Time
	var at time.Duration
	// A poll costs a few nanoseconds and reading the clock tens of them:
	// look at the clock, the deadline and Close only every 256 polls
	// (about a microsecond), so that a record is noticed at once.
	for i := uint32(1); ; i++ {
		if c.fc.Readable() {
			return true, at
		}
		if i&(spinClockEvery-1) == 0 {
			at = c.s.now()
		}
		if i&255 != 0 {
			continue
		}
		if i == 256 {
			start = time.Now()
			continue
		}
		if c.closed.Load() {
			return true, at
		}
		now := time.Now()
		if d := dl.Load(); d != 0 && now.UnixNano() >= d {
			return true, at
		}
		if done != nil {
			select {
			case <-done:
				return true, at
			default:
			}
		}
		if now.Sub(start) > budget {
			return false, 0
		}
		if i&1023 == 0 {
			// Let this process's other goroutines have the P (an HTTP
			// handler, say) and, now and then, another process the CPU:
			// on a small machine the peer may be waiting for it.
			runtime.Gosched()
			if i&4095 == 0 {
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			}
			at = 0 // we may have been off the CPU for long
		}
	}
}

// spinClockEvery is how many polls apart spin reads the stack's clock
// (a power of two): 16 polls are some 50 ns, so a record's arrival time
// is known to that, and the polling slows by a few percent.
const spinClockEvery = 16

// pollTime is the time to process input with after a wait: the clock as
// spin last read it, if the wait just polled the record in, else a fresh
// reading. The spin's reading is at most spinClockEvery polls old and
// precedes the record's arrival by no more than that, which is what an
// RTT sample wants; it may precede a reading another goroutine gave the
// engine meanwhile by as much, which the engine tolerates (a negative
// RTT sample counts as the smallest, timers come due a little early).
func (c *Conn) pollTime() time.Duration {
	if t := c.polledAt; t != 0 {
		c.polledAt = 0
		return t
	}
	return c.s.now()
}

// wakeWaitersLocked wakes the sleeping reader and writer so that they look
// at the connection again.
func (c *Conn) wakeWaitersLocked() {
	if c.rw.asleep {
		c.rw.wake()
	}
	if c.ww.asleep {
		c.ww.wake()
	}
}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// touchLocked ends an application call: it tells the progress engine the
// connection is in use (grace check) and makes sure the wheel entry is no
// later than the engine's deadline.
func (c *Conn) touchLocked(now time.Duration) {
	c.useGen++
	if c.finished {
		return
	}
	if !c.graceArmed {
		c.graceArmed = true
		c.s.arm(c, now+c.s.cfg.Grace)
	}
	// A deadline the engine set during this call lies at least minTimer
	// ahead, so an entry due before now+minTimer fires first anyway (and
	// the engine then re-arms it at the true deadline): no need to ask.
	if e := c.entryAt.Load(); e != 0 && time.Duration(e) <= now+c.minTimer {
		return
	}
	if d := c.tc.Deadline(); d != 0 {
		if e := c.entryAt.Load(); e == 0 || d < time.Duration(e) {
			c.s.arm(c, d)
		}
	}
}

// ---- the progress engine's side -------------------------------------------

// engineRun is the progress engine's work on c: input that waits on the
// ring (unless a goroutine polls it), due timers, the orphan timeout,
// queued control segments, the grace check, and re-arming the wheel. It
// does nothing if an application goroutine holds the connection, except
// ask to be run again a tick later.
func (c *Conn) engineRun(now time.Duration, timer bool) { c.engineStep(now, timer, true) }

// engineStep is engineRun; without mayArm it never arms the ring (the
// caller polls it: a spinning Accept that just completed the handshake).
func (c *Conn) engineStep(now time.Duration, timer, mayArm bool) {
	c.engineMissed.Store(true) // see sleep
	if !c.mu.TryLock() {
		c.s.arm(c, now+timerwheel.DefaultTick)
		return
	}
	c.engineMissed.Store(false)
	defer c.mu.Unlock()
	if c.finished {
		return
	}
	// A connection closed lazily (Close) is read without arming while it
	// has grace checks left: the peer's last segments come at its own
	// grace check, and an armed ring would make each of them ring our
	// doorbell (a system call for the peer, a wake-up for us). One not
	// done after lazyChecks of them is watched again.
	quiet := false
	if c.lazyClose > 0 {
		if timer {
			c.lazyClose--
		}
		if quiet = c.lazyClose > 0; !quiet {
			c.fc.SetWatch(true) // arms the ring again, or reports it ready
		}
	}
	if l := c.lst; l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	if !c.polling && !c.rxDone && !c.loan.blocksInput() {
		// Arm the ring (drain until it reports empty) only for a
		// connection no application goroutine is busy with: one whose
		// goroutine sleeps, or that has been idle for a grace period.
		// Re-arming a busy ring would make every record the peer sends
		// ring the doorbell and wake the engine: a wake-up per message.
		idle := !c.graceArmed || (timer && c.useGen == c.seenGen)
		c.drainLocked(now, nil, mayArm && !quiet && (idle || c.rw.asleep || c.ww.asleep))
	}
	if d := c.tc.Deadline(); d != 0 && d <= now {
		c.out = c.tc.OnTimer(now, c.out[:0])
		c.sendLocked()
		c.wakeWaitersLocked()
	}
	if c.orphanAt != 0 && now >= c.orphanAt && c.tc.State() != tcp.Closed {
		c.out = c.tc.Abort(now, c.out[:0])
		c.sendLocked()
	}
	c.flushPendingLocked()
	if timer && c.graceArmed {
		if c.useGen == c.seenGen {
			c.graceArmed = false // idle: the drain above armed the ring
		} else {
			c.seenGen = c.useGen
		}
	}
	if l := c.lst; l != nil {
		switch c.tc.State() {
		case tcp.SynReceived:
		case tcp.Closed:
			delete(l.pending, c.tc)
			c.lst = nil
			c.appClosed = true // nobody will ever Accept it
		default:
			l.signal()
		}
	}
	c.maybeFinishLocked()
	if !c.finished {
		c.rearmLocked(now)
	}
}

// pollPending processes the records waiting on a connection still in a
// listener's backlog, for a spinning Accept; it does nothing if someone
// else holds the connection.
func (c *Conn) pollPending(now time.Duration) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	l := c.lst
	if l == nil || c.finished || c.rxDone || !c.fc.Readable() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c.drainLocked(now, nil, false)
}

// rearmLocked asks the engine to run c at its next deadline.
func (c *Conn) rearmLocked(now time.Duration) {
	next := c.tc.Deadline()
	early := func(t time.Duration) {
		if t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	if c.graceArmed || c.lazyClose > 0 {
		early(now + c.s.cfg.Grace)
	}
	early(c.orphanAt)
	// Control segments waiting for ring room need no timer: the ring's
	// consumer reports room (flushPendingLocked armed it with Room).
	if next != 0 {
		if next <= now {
			next = now + timerwheel.DefaultTick
		}
		c.s.arm(c, next)
	}
}

// maybeFinishLocked releases the connection once the application has
// closed it and TCP is done with it (or its link is gone). TIME-WAIT is
// not kept: its purpose, telling old duplicates from a new incarnation,
// does not arise on a ring pair that dies with the connection.
func (c *Conn) maybeFinishLocked() {
	if c.finished || !c.appClosed || c.txBusy || c.copyOut {
		return // (a writer or WriteTo's w.Write still uses the fabric conn)
	}
	st := c.tc.State()
	if st != tcp.Closed && st != tcp.TimeWait && !c.rxDone {
		return
	}
	if st != tcp.Closed && st != tcp.TimeWait {
		c.out = c.tc.Abort(c.s.now(), c.out[:0])
		c.sendLocked()
	}
	c.finished = true
	c.fc.Close()
	c.s.retire(c)
}

// ---- closing --------------------------------------------------------------

// lazyChecks is how many grace checks a closed fabric connection is
// finished by polling its ring before it is watched again (see Close): two
// sides checking every Grace complete the closing handshake within two.
const lazyChecks = 3

// Close closes the connection: blocked Read and Write calls return
// net.ErrClosed. Queued data is not lost (there is none: Write returns
// once its bytes are in the fabric); a FIN follows, and the progress
// engine finishes the closing handshake. Unread received data, or
// SetLinger(0), makes it a reset instead, as in Linux.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.appClosed {
		return opError("close", c.laddr, c.raddr, net.ErrClosed)
	}
	c.appClosed = true
	c.closed.Store(true)
	now := c.s.now()
	unread := c.tc.Readable() > 0 || len(c.lent) > 0
	c.viewOut = false // Close ends a Peek view
	if !c.copyOut {
		c.releaseLentLocked() // else WriteTo does, when w.Write returns
	}
	switch {
	case c.txBusy:
		// A writer is blocked in the fabric: closing the fabric conn
		// unblocks it; the peer sees the connection reset.
		c.out = c.tc.Abort(now, c.out[:0])
		c.out = c.out[:0]
		c.rxDone = true
		c.fc.Close()
	case c.linger == 0 || unread:
		c.out = c.tc.Abort(now, c.out[:0])
		c.sendLocked()
	default:
		c.out = c.tc.Close(now, c.out[:0])
		c.sendLocked()
		c.orphanAt = now + c.s.cfg.OrphanTimeout
		if !c.finished && !c.rxDone && !c.viaGateway() {
			// What is left of a fabric connection after Close (the
			// peer's FIN and ACK, its fabric CLOSE) matters to nobody
			// here, and to the peer only for its bookkeeping: a Write
			// returned once its bytes were in the ring, and our FIN is
			// out. So no doorbell and no engine wake-up for each of
			// those segments: the ring is unwatched and the engine
			// finishes the handshake at its grace check, in one
			// wake-up for all the connections closed meanwhile
			// (engineStep watches it again). A connection through the
			// gateway keeps its watch: it may still retransmit.
			c.lazyClose = lazyChecks
			c.fc.SetWatch(false)
		}
	}
	c.wakeWaitersLocked()
	c.maybeFinishLocked()
	if !c.finished {
		c.rearmLocked(now)
	}
	return nil
}

// abortClose resets the connection and releases it (Stack.Close,
// Listener.Close).
func (c *Conn) abortClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.lst; l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	if c.finished {
		return
	}
	c.appClosed = true
	c.closed.Store(true)
	c.viewOut = false
	if !c.copyOut {
		c.releaseLentLocked()
	}
	if !c.txBusy {
		c.out = c.tc.Abort(c.s.now(), c.out[:0])
		c.sendLocked()
	}
	c.rxDone = true
	c.wakeWaitersLocked()
	if c.txBusy {
		c.fc.Close() // the writer finishes the release
		return
	}
	c.maybeFinishLocked()
}

// CloseWrite shuts down the writing side (a FIN goes out); reading goes
// on until the peer's FIN.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.appClosed {
		return opError("close", c.laddr, c.raddr, net.ErrClosed)
	}
	if c.wClosed {
		return nil
	}
	c.wClosed = true
	now := c.s.now()
	c.out = c.tc.Close(now, c.out[:0])
	c.sendLocked()
	c.wakeWaitersLocked()
	c.touchLocked(now)
	return nil
}

// CloseRead shuts down the reading side locally, as *net.TCPConn's: later
// Reads return io.EOF at once. TCP has no way to tell the peer, so what it
// still sends is taken in until the window is full, and never delivered.
func (c *Conn) CloseRead() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.appClosed {
		return opError("close", c.laddr, c.raddr, net.ErrClosed)
	}
	c.rClosed = true
	c.wakeWaitersLocked()
	return nil
}

// ---- deadlines and options --------------------------------------------------

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read, also for a Read already
// blocked. A zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdDeadline.Store(unixNano(t))
	c.mu.Lock()
	c.wakeWaitersLocked()
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the deadline for Write, also for a Write already
// blocked (a DMA write blocked in the fabric sees it too).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wrDeadline.Store(unixNano(t))
	c.fc.SetWriteDeadline(t)
	c.mu.Lock()
	c.wakeWaitersLocked()
	c.mu.Unlock()
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// SetNoDelay controls Nagle's algorithm (on by default: no delay, as Go's
// net package).
func (c *Conn) SetNoDelay(noDelay bool) error {
	c.mu.Lock()
	c.tc.SetNoDelay(noDelay)
	c.mu.Unlock()
	return nil
}

// SetKeepAlive switches keepalive probes on (with the period already set,
// or else two hours: RFC 9293 MUST-28) or off.
func (c *Conn) SetKeepAlive(on bool) error {
	d := time.Duration(0)
	if on {
		d = c.keepAliveIdle()
	}
	return c.SetKeepAlivePeriod(d)
}

// SetKeepAlivePeriod sets the idle time before keepalive probes.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	c.mu.Lock()
	now := c.s.now()
	c.tc.SetKeepAlive(now, d)
	c.minTimer = c.s.minTimer(d)
	c.touchLocked(now)
	c.mu.Unlock()
	return nil
}

// SetLinger sets what Close does with a connection that still has data
// to send: sec < 0 (default) finishes in the background; sec == 0 resets
// the connection at once. There is never unsent data on a fabric
// connection (Write returns once its bytes are in the ring), so positive
// values behave as negative ones.
func (c *Conn) SetLinger(sec int) error {
	c.mu.Lock()
	c.linger = sec
	c.mu.Unlock()
	return nil
}

// SetReadBuffer sets the ceiling of the receive window's auto-tuning.
func (c *Conn) SetReadBuffer(bytes int) error {
	c.mu.Lock()
	c.tc.SetMaxRecvBuf(bytes)
	c.mu.Unlock()
	return nil
}

// SetWriteBuffer bounds how many bytes one DMA record carries (Write never
// buffers: it returns when its bytes are in the fabric). At least 64 KiB.
func (c *Conn) SetWriteBuffer(bytes int) error {
	c.mu.Lock()
	c.maxDMA = max(bytes, 64<<10)
	c.mu.Unlock()
	return nil
}
