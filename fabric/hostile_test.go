package fabric

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

// roleHostile dials args[2], streams records on one connection, and after
// 100 ms writes random bytes over the segment's header, control rings,
// connection tables, ready hints and the start of both slabs for 300 ms, ringing the
// victim's doorbell and tripwires as a producer would so that the victim
// looks at the garbage at once. Then it waits to be killed.
func roleHostile(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	victim := netip.MustParseAddr(args[2])
	c, err := n.Dial(context.Background(), victim, ConnConfig{RingSize: 64 << 10})
	if err != nil {
		return err
	}
	proc.Send(ready{true})
	var stop atomic.Bool
	go func() {
		rec := make([]byte, 1000)
		for !stop.Load() && c.Send(rec) == nil {
		}
	}()
	time.Sleep(100 * time.Millisecond)
	n.mu.Lock()
	p := n.peers[victim]
	n.mu.Unlock()
	seg := unsafe.Slice((*byte)(p.mem), p.l.size)
	regions := [][2]uint64{
		{0, pageSize},
		{p.l.ctl[0], p.l.conns[0] - p.l.ctl[0]},
		{p.l.conns[0], 64 << 10},
		{p.l.conns[1], 64 << 10},
		{p.l.ready[0], p.l.slab[0] - p.l.ready[0]}, // both sides' ready hints
		{p.l.slab[0], 1 << 20},
		{p.l.slab[1], 1 << 20},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		for _, r := range regions {
			b := seg[r[0] : r[0]+r[1]]
			for i := 0; i+8 <= len(b); i += 8 {
				*(*uint64)(unsafe.Pointer(&b[i])) = rng.Uint64()
			}
		}
		ringBell(p.bell)
		futexWake(c.tx.ctl32(offConsArmed), allWaiters)
		futexWake(c.rx.ctl32(offProdArmed), allWaiters)
	}
	stop.Store(true)
	proc.Send(map[string]bool{"scribbled": true})
	time.Sleep(time.Hour)
	return nil
}

// truncResult is what roleTruncater reports.
type truncResult struct {
	SHA    string
	Bytes  int64
	Errors []string // one per hostile resizing attempt
}

// roleTruncater dials args[2] and streams args[3] bytes (seed args[4]);
// 20 ms in, it tries to shrink, grow and unseal the shared memory under
// the transfer, then finishes the transfer and reports what happened.
func roleTruncater(args []string) error {
	n, err := childNode(args)
	if err != nil {
		return err
	}
	defer n.Close()
	victim := netip.MustParseAddr(args[2])
	total, _ := strconv.ParseInt(args[3], 10, 64)
	seed, _ := strconv.ParseUint(args[4], 10, 64)
	c, err := n.Dial(context.Background(), victim, ConnConfig{RingSize: 1 << 20})
	if err != nil {
		return err
	}
	proc.Send(ready{true})
	done := make(chan error, 1)
	var sum string
	var sent int64
	go func() {
		var err error
		sum, sent, err = stream(c, seed, total, 64<<10, false)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	n.mu.Lock()
	p := n.peers[victim]
	n.mu.Unlock()
	var res truncResult
	report := func(err error) {
		if err == nil {
			res.Errors = append(res.Errors, "")
		} else {
			res.Errors = append(res.Errors, errors.Unwrap(err).Error())
		}
	}
	report(wrapErr(unix.Ftruncate(p.memFd, 0)))
	report(wrapErr(unix.Ftruncate(p.memFd, int64(p.l.size/2))))
	report(wrapErr(unix.Ftruncate(p.memFd, int64(p.l.size*2))))
	_, err = unix.FcntlInt(uintptr(p.memFd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE)
	report(wrapErr(err))
	if err := <-done; err != nil {
		return err
	}
	c.Close()
	res.SHA, res.Bytes = sum, sent
	return proc.Send(res)
}

type errnoErr struct{ e syscall.Errno }

func (e errnoErr) Error() string { return "resize attempt: " + e.e.Error() }
func (e errnoErr) Unwrap() error { return e.e }

func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	return errnoErr{err.(syscall.Errno)}
}
