package fabric

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

// Child roles for the two-process tests. Each takes the fabric directory
// and its own address first; it says {"ready":true} once it has joined.

func init() {
	proc.Register("sink", roleSink)
	proc.Register("echo-loop", roleEchoLoop)
	proc.Register("stream-then-stall", roleStreamThenStall)
	proc.Register("accept-and-stall", roleAcceptAndStall)
	proc.Register("hostile", roleHostile)
	proc.Register("truncater", roleTruncater)
	proc.Register("source", roleSource)
}

type ready struct{ Ready bool }

type sinkResult struct {
	SHA     string
	Bytes   int64
	Records int
	Err     string
}

func childNode(args []string) (*Node, error) {
	if len(args) < 2 {
		return nil, errors.New("need fabric dir and address")
	}
	f, err := Open(Config{Dir: args[0], SlabSize: 1 << 30})
	if err != nil {
		return nil, err
	}
	return f.Join(netip.MustParseAddr(args[1]))
}

// roleSink accepts one connection, hashes every record until EOF and
// reports the digest. args[2] is "peek" (zero-copy) or "recv" (copying,
// which also pulls DMA records).
func roleSink(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	proc.Send(ready{true})
	c, err := n.Accept(context.Background())
	if err != nil {
		return err
	}
	res := sink(c, args[2])
	return proc.Send(res)
}

func sink(c *Conn, mode string) sinkResult {
	h := sha256.New()
	var res sinkResult
	buf := make([]byte, 4<<20)
	for {
		var err error
		if mode == "peek" {
			var r Record
			r, err = c.Peek()
			if err == nil {
				h.Write(r.Data)
				res.Bytes += int64(len(r.Data))
				c.Release()
			}
		} else {
			var k int
			k, err = c.Recv(buf)
			if err == nil {
				h.Write(buf[:k])
				res.Bytes += int64(k)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			res.Err = err.Error()
			break
		}
		res.Records++
	}
	c.Close()
	res.SHA = hex.EncodeToString(h.Sum(nil))
	return res
}

// stream sends total bytes of records of random sizes in [1, maxRec],
// through PIO (Send) or DMA (SendDMA, with a random inline prefix of up to
// 64 bytes), and returns the SHA-256 of what the receiver must see.
func stream(c *Conn, seed uint64, total int64, maxRec int, dma bool) (string, int64, error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	pool := make([]byte, 4<<20+maxRec)
	for i := 0; i+8 <= len(pool); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			pool[i+k] = byte(v >> (8 * k))
		}
	}
	h := sha256.New()
	var sent int64
	for sent < total {
		n := 1 + rng.IntN(maxRec)
		if rng.IntN(8) == 0 {
			n = 1 + rng.IntN(64) // plenty of small records too
		}
		off := rng.IntN(len(pool) - n)
		p := pool[off : off+n]
		var err error
		if dma {
			k := rng.IntN(65)
			if k > n {
				k = n
			}
			err = c.SendDMA(p[:k], p[k:])
		} else {
			err = c.Send(p)
		}
		if err != nil {
			return "", sent, fmt.Errorf("after %d bytes: %w", sent, err)
		}
		h.Write(p)
		sent += int64(n)
	}
	return hex.EncodeToString(h.Sum(nil)), sent, nil
}

// roleEchoLoop serves every connection from one event loop (Node.Wait and
// watched connections): each record comes back as it came. It stops when
// args[2] connections have come and gone.
func roleEchoLoop(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	want, _ := strconv.Atoi(args[2])
	proc.Send(ready{true})
	none, cancel := context.WithCancel(context.Background())
	cancel()
	finished := 0
	serve := func(c *Conn) error {
		if c.state.Load()&stClosed != 0 {
			return nil // listed twice
		}
		for {
			r, err := c.PeekNoWait()
			if errors.Is(err, ErrWouldBlock) {
				return nil
			}
			if err != nil {
				c.Close()
				finished++
				return nil
			}
			if err := c.Send(r.Data); err != nil {
				return err
			}
			c.Release()
		}
	}
	var ready []*Conn
	for finished < want {
		for {
			c, err := n.Accept(none)
			if err != nil {
				break
			}
			c.SetWatch(true)
			if err := serve(c); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ready, err = n.Wait(ctx, ready[:0])
		cancel()
		if err != nil {
			return fmt.Errorf("wait with %d connections finished: %w", finished, err)
		}
		for _, c := range ready {
			if err := serve(c); err != nil {
				return err
			}
		}
	}
	return proc.Send(map[string]int{"finished": finished})
}

// roleStreamThenStall dials args[2], sends 100 records, says so, and waits
// to be killed.
func roleStreamThenStall(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	c, err := n.Dial(context.Background(), netip.MustParseAddr(args[2]), ConnConfig{RingSize: 64 << 10})
	if err != nil {
		return err
	}
	for i := range 100 {
		if err := c.Send([]byte(fmt.Sprint(i))); err != nil {
			return err
		}
	}
	proc.Send(ready{true})
	time.Sleep(time.Hour)
	return nil
}

// roleAcceptAndStall accepts one connection, never reads it, and waits to
// be killed.
func roleAcceptAndStall(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	proc.Send(ready{true})
	if _, err := n.Accept(context.Background()); err != nil {
		return err
	}
	time.Sleep(time.Hour)
	return nil
}

// roleSource dials args[2] and streams args[3] bytes (PIO, records up to
// 64 KiB, seed args[4]), then closes and reports the digest.
func roleSource(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	total, _ := strconv.ParseInt(args[3], 10, 64)
	seed, _ := strconv.ParseUint(args[4], 10, 64)
	c, err := n.Dial(context.Background(), netip.MustParseAddr(args[2]), ConnConfig{RingSize: 1 << 20})
	if err != nil {
		return err
	}
	proc.Send(ready{true})
	sum, sent, err := stream(c, seed, total, 64<<10, false)
	if err != nil {
		return err
	}
	c.Close()
	return proc.Send(sinkResult{SHA: sum, Bytes: sent})
}

func init() { proc.Register("send-close-exit", roleSendCloseExit) }

// roleSendCloseExit dials args[2], sends 1000 numbered records, closes the
// connection and exits at once, without leaving the fabric.
func roleSendCloseExit(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	c, err := n.Dial(context.Background(), netip.MustParseAddr(args[2]), ConnConfig{RingSize: 64 << 10})
	if err != nil {
		return err
	}
	for i := range 1000 {
		if err := c.Send([]byte(strconv.Itoa(i))); err != nil {
			return err
		}
	}
	c.Close()
	proc.Send(ready{true})
	os.Exit(0)
	return nil
}

func init() { proc.Register("every-size", roleEverySize) }

// roleEverySize dials args[2] with a 4 KiB ring and sends one record of
// every size from 1 to MaxRecord, each filled with a pattern of its size,
// then tries every size from MaxRecord+1 to three ring sizes and reports
// how many were refused with ErrRecordTooLarge.
func roleEverySize(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	c, err := n.Dial(context.Background(), netip.MustParseAddr(args[2]), ConnConfig{RingSize: MinRingSize})
	if err != nil {
		return err
	}
	proc.Send(ready{true})
	buf := make([]byte, 3*MinRingSize)
	for size := 1; size <= c.MaxRecord(); size++ {
		fill(buf[:size], size)
		if err := c.Send(buf[:size]); err != nil {
			return fmt.Errorf("size %d: %w", size, err)
		}
	}
	refused := 0
	for size := c.MaxRecord() + 1; size <= 3*MinRingSize; size++ {
		if err := c.Send(buf[:size]); errors.Is(err, ErrRecordTooLarge) {
			refused++
		}
	}
	c.Close()
	return proc.Send(map[string]int{"refused": refused})
}

func init() { proc.Register("accept-close", roleAcceptClose) }

// acceptCloseResult is what roleAcceptClose reports.
type acceptCloseResult struct {
	Accepted int
	Err      string // the first failure it saw, "" if none
}

// roleAcceptClose accepts connections and closes each one at once, from a
// goroutine of its own (so that closes overlap and one may be preempted
// between its CLOSE message and its bookkeeping), until args[2] were
// accepted or none came for 2 s. A connection that failed, or a peer that
// stopped delivering connections, is reported.
func roleAcceptClose(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	want, _ := strconv.Atoi(args[2])
	proc.Send(ready{true})
	var res acceptCloseResult
	for res.Accepted < want {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := n.Accept(ctx)
		cancel()
		if err != nil {
			res.Err = fmt.Sprintf("accept after %d: %v", res.Accepted, err)
			break
		}
		res.Accepted++
		if err := c.Err(); err != nil {
			res.Err = fmt.Sprintf("connection %d failed: %v", res.Accepted, err)
			break
		}
		go c.Close()
	}
	return proc.Send(res)
}
