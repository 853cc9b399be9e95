package ultcp

import (
	"io"
	"net"
	"time"
)

// Zero-copy receive. Peek lends the application the next received bytes
// where they already are: in the fabric ring itself when nothing is
// buffered (the peer's PIO record, not yet released), otherwise in the
// engine's receive buffer. Discard consumes them. With WriteTo, io.Copy
// from a Conn hands ring memory straight to the destination writer, so
// the bytes are copied once, by the destination, on their whole way.
//
// Lending a ring record: the record's segment is given to the engine at
// Peek time with its whole payload "placed" (tcp.Conn.InputDirect), so
// TCP acknowledges the bytes and opens the window as if they had been
// read, while the record stays unreleased and its memory stable. Nobody
// else reads the ring until the loan ends (drainLocked and the progress
// engine skip a connection with a loan), so the order of the stream is
// kept: the lent bytes come first, then whatever the next records bring.
//
// Ending a loan early. A Write that has to wait for the peer's window
// while a loan blocks the ring would wait forever: the ACKs it needs are
// queued behind the lent record. So it ends the loan (unlendLocked: the
// lent bytes are copied into lentBuf, the record released). But while
// the view is with a reader that runs without mu (a Peek view until the
// next Peek, Discard, Read or Close: viewOut; WriteTo's w.Write: copyOut)
// releasing the record would let the peer overwrite bytes the reader is
// still reading. The writer then sleeps until the reader gives the view
// back; the reader's next call (or WriteTo once w.Write returns) wakes
// it. One cycle would still deadlock: io.Copy(c2, c1) and io.Copy(c1, c2)
// at once, each WriteTo's destination Write waiting for a view the other
// holds. A Write given a view by another connection's WriteTo
// (writeView) therefore copies it away before it waits for anything and
// gives it back at once (detachViewLocked).

// Peek waits, as Read does, for received data and returns a read-only
// view of it without copying. The view stays valid until the next Peek,
// Discard, Read or Close. Peek honours the read deadline.
//
// While a view of the ring is lent, the connection reads nothing more
// from its ring, and the ACKs for what this side sends wait behind it.
// A Write on the same connection that has to wait for the peer's window
// therefore waits until the view is given back (the next Peek, Discard,
// Read or Close). So a goroutine that holds a view must not make a large
// Write on the same connection before it Discards; a Write from another
// goroutine is fine (it waits, and the view never changes under the
// reader). Do not pass a view to Write on its own connection (WriteTo
// takes care of that).
func (c *Conn) Peek() ([]byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.viewBackLocked()
	b, err := c.peekLocked(true)
	if err != nil {
		return nil, opError("read", c.laddr, c.raddr, err)
	}
	c.viewOut = len(c.lent) > 0 && c.loan.blocksInput()
	return b, nil
}

// viewBackLocked notes that the application gave back the view the last
// Peek returned (it calls the reader's side again), waking a writer that
// waits for it.
func (c *Conn) viewBackLocked() {
	if c.viewOut {
		c.viewOut = false
		c.wakeWaitersLocked()
	}
}

func (c *Conn) peekLocked(lend bool) ([]byte, error) {
	for {
		if c.appClosed {
			return nil, net.ErrClosed
		}
		if c.rClosed {
			return nil, io.EOF
		}
		if len(c.lent) > 0 {
			return c.lent, nil
		}
		now := c.s.now()
		if c.tc.Readable() > 0 {
			b, _ := c.tc.Peek()
			return b, nil
		}
		if !c.polling && !c.rxDone {
			if lend && c.lendLocked(now) {
				continue
			}
			if !lend && c.fc.Readable() {
				c.drainLocked(now, nil, false)
				continue
			}
		}
		if err := c.readErrLocked(); err != nil {
			c.touchLocked(now)
			return nil, err
		}
		if expired(&c.rdDeadline) {
			c.touchLocked(now)
			return nil, errTimeout
		}
		c.wait(&c.rw, &c.rdDeadline, nil)
	}
}

// lendLocked processes the next record, lending its payload if it is
// in-order PIO data (see the file comment). It reports whether it found a
// record.
func (c *Conn) lendLocked(now time.Duration) bool {
	if !c.fc.Readable() {
		return false
	}
	r, err := c.fc.PeekNoWait()
	if err != nil {
		if err != errWouldBlock {
			c.rxFailedLocked(now, err)
			c.wakeWaitersLocked()
		}
		return err != errWouldBlock
	}
	c.inputRecordLocked(now, &r, nil, true)
	c.sendLocked()
	c.wakeWaitersLocked()
	return true
}

// Discard consumes n bytes of what Peek returned (fewer if fewer are
// readable) and returns how many.
func (c *Conn) Discard(n int) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.viewBackLocked()
	if c.appClosed {
		return 0, opError("read", c.laddr, c.raddr, net.ErrClosed)
	}
	now := c.s.now()
	if len(c.lent) > 0 {
		k := min(n, len(c.lent))
		c.discardLentLocked(now, k)
		c.touchLocked(now)
		return k, nil
	}
	k := c.tc.Discard(n)
	c.afterReadLocked(now)
	return k, nil
}

// discardLentLocked consumes k lent bytes; the record goes back to the
// ring once all are consumed.
func (c *Conn) discardLentLocked(now time.Duration, k int) {
	c.lent = c.lent[k:]
	if len(c.lent) == 0 {
		c.releaseLentLocked()
		c.out = c.tc.Output(now, c.out[:0])
		c.sendLocked()
	}
}

// unlendLocked ends a loan early, keeping the lent bytes in a buffer of
// the connection's own, so that the ring can be read again. The view must
// be back (viewOut and copyOut false).
func (c *Conn) unlendLocked() {
	c.lentBuf = append(c.lentBuf[:0], c.lent...)
	c.releaseLentLocked()
	c.lent, c.loan = c.lentBuf, loanCopy
}

// releaseLentLocked ends a loan.
func (c *Conn) releaseLentLocked() {
	if c.loan == loanRing {
		c.fc.Release()
	}
	c.lent, c.loan = nil, loanNone
}

// loanKind says where the bytes lent by Peek live.
type loanKind uint8

const (
	loanNone    loanKind = iota
	loanRing             // a ring record's payload; the record is held until the loan ends
	loanScratch          // the connection's DMA scratch buffer, which the next DMA record would overwrite
	loanCopy             // lentBuf, after unlendLocked
)

// blocksInput reports whether the ring may not be read during the loan.
func (k loanKind) blocksInput() bool { return k == loanRing || k == loanScratch }

// WriteTo writes everything the connection receives to w until EOF,
// handing w views of the received bytes (Peek/Discard) rather than
// copying them into a buffer first. io.Copy uses it.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	// Writing a view of this connection's own ring back into it (an echo)
	// could wait for the peer's window while the ACKs that would open it
	// sit behind the lent record: such a copy goes through the receive
	// buffer instead.
	lend := true
	var dst *Conn // another connection of ours: writeView
	switch x := w.(type) {
	case *Conn:
		lend, dst = x != c, x
	case connWriter:
		lend, dst = x.c != c, x.c
	}
	for {
		c.readMu.Lock()
		c.mu.Lock()
		c.viewBackLocked()
		b, err := c.peekLocked(lend)
		c.copyOut = err == nil && len(c.lent) > 0 && c.loan.blocksInput()
		lentRing := c.copyOut
		c.mu.Unlock()
		if err != nil {
			c.readMu.Unlock()
			if err == io.EOF {
				return total, nil
			}
			return total, opError("read", c.laddr, c.raddr, err)
		}
		// w runs without c.mu (it may be slow, or write to this very
		// connection) but with readMu, and copyOut keeps the loan (see
		// the file comment), so the view stays ours.
		var n int
		var werr error
		if dst != nil && lentRing {
			n, werr = dst.writeView(b, c)
		} else {
			n, werr = w.Write(b)
		}
		c.mu.Lock()
		if c.copyOut {
			c.copyOut = false
			c.wakeWaitersLocked()
		}
		if c.appClosed {
			c.releaseLentLocked() // Close left it to us
			c.maybeFinishLocked()
		} else {
			now := c.s.now()
			if len(c.lent) > 0 {
				c.discardLentLocked(now, n)
			} else {
				c.tc.Discard(n)
				c.afterReadLocked(now)
			}
			c.touchLocked(now)
		}
		c.mu.Unlock()
		c.readMu.Unlock()
		total += int64(n)
		if werr != nil {
			return total, werr
		}
		if n < len(b) {
			return total, io.ErrShortWrite
		}
	}
}

// ReadFrom writes everything read from r to the connection. A *Conn
// source is drained with its WriteTo (zero-copy on the receive side);
// anything else is read in blocks of the DMA threshold, so that each
// block goes by DMA (the peer pulls it from the block) instead of being
// copied into the ring in 32 KiB pieces as io.Copy's buffer would be.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if src, ok := r.(*Conn); ok {
		return src.WriteTo(connWriter{c})
	}
	size := max(c.s.cfg.DMAThreshold, 64<<10)
	buf := make([]byte, size)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// writeView is Write for p, a view lent by src's WriteTo: before it waits
// for anything it copies p away and gives the view back to src, so that a
// writer on src never waits for this Write (see the file comment).
func (c *Conn) writeView(p []byte, src *Conn) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	c.wslow = true // keeps Write's fast path out (see Write)
	n, err := c.writeLocked(p, src)
	c.wslow = false
	c.mu.Unlock()
	if err != nil {
		return n, opError("write", c.laddr, c.raddr, err)
	}
	return n, nil
}

// detachViewLocked copies p, a view src lent, into the writer's own
// buffer and gives the view back to src. It lets go of c.mu meanwhile
// (never hold two connections' locks), so the caller re-checks c.
func (c *Conn) detachViewLocked(p []byte, src *Conn) []byte {
	c.wcopy = append(c.wcopy[:0], p...)
	c.mu.Unlock()
	src.mu.Lock()
	if src.copyOut {
		src.copyOut = false
		src.wakeWaitersLocked()
	}
	src.mu.Unlock()
	c.mu.Lock()
	return c.wcopy
}

// connWriter hides Conn's ReadFrom so that WriteTo does not recurse.
type connWriter struct{ c *Conn }

func (w connWriter) Write(p []byte) (int, error) { return w.c.Write(p) }
