// Package floor measures the bare mechanisms under the fabric, each between
// two real processes, so that every fabric number can be read next to the
// least the hardware and kernel allow for the same job:
//
//   - PingPong: two processes bounce a counter on two cache lines of one
//     shared page (one line each way), spinning; or, in futex mode, sleeping
//     on each word and waking the peer with FUTEX_WAKE on every message.
//   - Ring: a shared single-producer single-consumer byte ring of 4 MiB; the
//     producer copies blocks in, the consumer copies them out to a private
//     buffer.
//   - CMA: the receiver pulls blocks from the sender's buffer with
//     process_vm_readv in a loop, plain or with a shared-memory flag
//     handshake per transfer (the shape of the fabric's DMA path).
//
// The parent process is always the receiver (the side that measures
// elapsed time); a child started with internal/proc is the sender. Each side
// reports its own CPU time (getrusage RUSAGE_SELF, user+sys, all threads)
// over the measured interval. A program that uses this package must call
// proc.RunChild first in main or TestMain, since the child roles are
// registered here at init.
//
// The package must never contain fabric logic: no record framing, no
// checking of a peer's values, no notification policy beyond what the
// mechanism itself needs. A floor is the least work the mechanism requires;
// anything more would flatter the fabric. Every spin loop is bounded in time
// and yields to the Go scheduler now and then, so a dead or stalled peer
// gives an error, never a hang.
package floor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

// Config holds what every floor accepts.
type Config struct {
	// Pin pins the measuring thread of the parent to CPU 0 and the child's
	// to CPU 1 for the duration of each run. Unpinned, the scheduler places
	// them; on a 2-core machine the two usually end up apart anyway.
	Pin bool
	// Stall is how long any wait may see no progress from the peer before
	// the run fails with ErrStalled. Zero means DefaultStall.
	Stall time.Duration
}

// DefaultStall bounds a wait when Config.Stall is zero.
const DefaultStall = 2 * time.Second

func (c Config) stall() time.Duration {
	if c.Stall <= 0 {
		return DefaultStall
	}
	return c.Stall
}

// ErrStalled is returned when the peer made no progress for Config.Stall.
var ErrStalled = errors.New("floor: peer made no progress")

// Stream is the outcome of one streaming run: Bytes moved from the child
// (sender) to the parent (receiver) in Elapsed, and the CPU time each
// process spent over that interval.
type Stream struct {
	Block       int           // bytes per transfer
	Bytes       int64         // bytes moved in all
	Elapsed     time.Duration // wall time at the receiver, first byte wait to last byte out
	SenderCPU   time.Duration // user+sys of the sending process over its part of the run
	ReceiverCPU time.Duration // user+sys of the receiving process over Elapsed
}

// GBps is the bandwidth in 10⁹ bytes per second.
func (s Stream) GBps() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) / s.Elapsed.Seconds() / 1e9
}

// SenderNsPerByte is the sender's CPU time per byte moved, in nanoseconds.
func (s Stream) SenderNsPerByte() float64 { return perByte(s.SenderCPU, s.Bytes) }

// ReceiverNsPerByte is the receiver's CPU time per byte moved, in nanoseconds.
func (s Stream) ReceiverNsPerByte() float64 { return perByte(s.ReceiverCPU, s.Bytes) }

func perByte(d time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / float64(n)
}

// Latency is the outcome of a ping-pong run: the half round trip time,
// the minimum and the median over batches of round trips.
type Latency struct {
	MinNs, MedianNs float64 // half round trip, nanoseconds
	Batches         int
	PerBatch        int // round trips per batch
}

// ProcessCPU is the calling process's user+sys CPU time so far, all threads.
func ProcessCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("floor: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// waiter bounds a spin loop. Every spinsPerYield failed polls it yields to
// the Go scheduler (so a spinner never starves its own runtime) and checks
// the clock; every goschedsPerOSYield of those it also yields the CPU to
// other processes with sched_yield, because runtime.Gosched never gives up
// the thread: on a 2-core machine with a third runnable thread, a spinner
// whose peer was preempted onto its own CPU would otherwise burn its whole
// time slice waiting for it. After stall without progress it fails.
// Reading the clock only on yields keeps the fast path to a counter
// increment, which matters for a ~100 ns ping-pong.
type waiter struct {
	stall time.Duration
	n     uint32
	since time.Time
}

const (
	spinsPerYield      = 1 << 12
	goschedsPerOSYield = 16
)

func (w *waiter) reset() {
	w.n = 0
	w.since = time.Time{}
}

// pause is called once per failed poll.
func (w *waiter) pause() error {
	w.n++
	if w.n%spinsPerYield != 0 {
		return nil
	}
	if w.n%(spinsPerYield*goschedsPerOSYield) == 0 {
		_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	} else {
		runtime.Gosched()
	}
	now := time.Now()
	if w.since.IsZero() {
		w.since = now
		return nil
	}
	if now.Sub(w.since) > w.stall {
		return ErrStalled
	}
	return nil
}

// waitU64 spins until *p == want.
func (w *waiter) waitU64(p *uint64, want uint64) error {
	w.reset()
	for atomic.LoadUint64(p) != want {
		if err := w.pause(); err != nil {
			return err
		}
	}
	return nil
}

// shm is one shared mapping. The parent creates it with memfd_create; the
// child opens it through /proc/<parent>/fd/<n>, so no file is ever left in
// a directory, whatever happens to either process.
type shm struct {
	fd  int // -1 in the child
	mem []byte
}

func newShm(size int) (*shm, error) {
	fd, err := unix.MemfdCreate("ultcp-floor", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("floor: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("floor: sizing shared memory: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("floor: mapping shared memory: %w", err)
	}
	return &shm{fd: fd, mem: mem}, nil
}

func (s *shm) path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), s.fd) }

func openShm(path string, size int) (*shm, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("floor: opening parent's shared memory %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("floor: stat %s: %w", path, err)
	}
	if st.Size != int64(size) {
		return nil, fmt.Errorf("floor: shared memory is %d bytes, want %d", st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("floor: mapping %s: %w", path, err)
	}
	return &shm{fd: -1, mem: mem}, nil
}

func (s *shm) close() {
	if s.mem != nil {
		_ = unix.Munmap(s.mem)
		s.mem = nil
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
}

// u64 returns the shared 64-bit word at byte offset off.
func (s *shm) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[off])) }

// u32 returns the shared 32-bit word at byte offset off (futex words are 32 bits).
func (s *shm) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&s.mem[off])) }

// Cache-line spacing of shared words. 128 rather than 64 because the
// adjacent-line prefetcher pulls lines in pairs: two hot words 64 bytes
// apart would still bounce together.
const line = 128

// command is what the parent asks of a child, one JSON line on its stdin.
type command struct {
	Op     string
	Block  int    `json:",omitempty"`
	Total  int64  `json:",omitempty"`
	Seq    uint64 `json:",omitempty"`
	From   uint32 `json:",omitempty"`
	Rounds int    `json:",omitempty"`
	Futex  bool   `json:",omitempty"`
	Verify bool   `json:",omitempty"`
}

// reply is what a child answers, one JSON line via proc.Send.
type reply struct {
	Err  string        `json:",omitempty"`
	CPU  time.Duration `json:",omitempty"`
	Addr uint64        `json:",omitempty"`
	Pid  int           `json:",omitempty"`
}

// session is the parent's handle on a child role and the memory they share.
type session struct {
	cfg   Config
	child *proc.Child
	mem   *shm
	enc   *json.Encoder
}

// Ops that every role serves.
const (
	opCPU = "cpu" // reply with the child's process CPU time so far
)

// replyTimeout bounds a child's answer to a command that does not itself
// run a transfer; a transfer's reply is bounded by the stall time instead.
const replyTimeout = 10 * time.Second

func startSession(role string, size int, cfg Config) (*session, error) {
	m, err := newShm(size)
	if err != nil {
		return nil, err
	}
	pin := "0"
	if cfg.Pin {
		pin = "1"
	}
	c, err := proc.Start(role, m.path(), strconv.Itoa(size), pin, cfg.stall().String())
	if err != nil {
		m.close()
		return nil, err
	}
	s := &session{cfg: cfg, child: c, mem: m, enc: json.NewEncoder(c.Stdin())}
	var r reply
	if err := s.recv(&r, replyTimeout); err != nil {
		s.Close()
		return nil, err
	}
	// The child has its own mapping now; the descriptor is no longer needed.
	_ = unix.Close(m.fd)
	m.fd = -1
	return s, nil
}

func (s *session) send(c command) error {
	if err := s.enc.Encode(c); err != nil {
		return fmt.Errorf("floor: commanding %s: %w", s.child.Role, err)
	}
	return nil
}

func (s *session) recv(r *reply, timeout time.Duration) error {
	if err := s.child.Recv(r, timeout); err != nil {
		return err
	}
	if r.Err != "" {
		return fmt.Errorf("floor: %s: %s", s.child.Role, r.Err)
	}
	return nil
}

func (s *session) call(c command, r *reply) error {
	if err := s.send(c); err != nil {
		return err
	}
	return s.recv(r, replyTimeout)
}

// childCPU asks the child for its process CPU time so far.
func (s *session) childCPU() (time.Duration, error) {
	var r reply
	if err := s.call(command{Op: opCPU}, &r); err != nil {
		return 0, err
	}
	return r.CPU, nil
}

// Close stops the child (closing its stdin ends its command loop) and
// unmaps the shared memory.
func (s *session) Close() error {
	_ = s.child.Stdin().Close()
	err := s.child.Wait(5 * time.Second)
	s.mem.close()
	return err
}

// RunPinned runs f on a locked OS thread pinned to cpu when pin is set
// (and simply runs f otherwise), restoring the thread's affinity
// afterwards so the runtime gets back a normal thread.
func RunPinned(pin bool, cpu int, f func() error) error {
	if !pin {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("floor: sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("floor: pinning to CPU %d: %w", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &old)
	return f()
}

// childEnv is what a child role gets from its arguments.
type childEnv struct {
	mem   *shm
	pin   bool
	stall time.Duration
	dec   *json.Decoder
}

// serveChild is the body of every child role: map the parent's memory,
// say ready, then answer commands from stdin until it is closed.
func serveChild(args []string, handle func(env *childEnv, c command) (reply, error)) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments (shm path, size, pin, stall), got %d", len(args))
	}
	size, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("bad size %q: %w", args[1], err)
	}
	stall, err := time.ParseDuration(args[3])
	if err != nil {
		return fmt.Errorf("bad stall %q: %w", args[3], err)
	}
	m, err := openShm(args[0], size)
	if err != nil {
		return err
	}
	defer m.close()
	env := &childEnv{mem: m, pin: args[2] == "1", stall: stall, dec: json.NewDecoder(os.Stdin)}
	if err := proc.Send(reply{Pid: os.Getpid()}); err != nil {
		return err
	}
	for {
		var c command
		if err := env.dec.Decode(&c); err != nil {
			return nil // stdin closed: the parent is done with us
		}
		var r reply
		if c.Op == opCPU {
			r.CPU, err = ProcessCPU()
		} else {
			err = RunPinned(env.pin, 1, func() error {
				var herr error
				r, herr = handle(env, c)
				return herr
			})
		}
		if err != nil {
			r = reply{Err: err.Error()}
		}
		if err := proc.Send(r); err != nil {
			return err
		}
	}
}

// fillPattern writes the byte pattern the verifying runs check.
func fillPattern(b []byte) {
	for i := range b {
		b[i] = byte(i*31 + 7)
	}
}

// timedStream is the parent's side of a streaming run that starts with the
// ready/start hand-shake (offReady, offStart): on the
// pinned parent thread it waits for the child's ready, opens the measured
// interval, runs loop, and closes it; then it collects the child's CPU
// time from its reply. A failure kills the child, whose loop would
// otherwise wait for a parent that is gone.
func (s *session) timedStream(seq uint64, block int, total int64, loop func() error) (Stream, error) {
	m := s.mem
	w := waiter{stall: s.cfg.stall()}
	var res Stream
	err := RunPinned(s.cfg.Pin, 0, func() error {
		if err := w.waitU64(m.u64(offReady), seq); err != nil {
			return fmt.Errorf("floor: %s not ready: %w", s.child.Role, err)
		}
		cpu0, err := ProcessCPU()
		if err != nil {
			return err
		}
		t0 := time.Now()
		atomic.StoreUint64(m.u64(offStart), seq)
		if err := loop(); err != nil {
			return err
		}
		res.Elapsed = time.Since(t0)
		cpu1, err := ProcessCPU()
		res.ReceiverCPU = cpu1 - cpu0
		return err
	})
	if err != nil {
		s.child.Kill()
		return Stream{}, err
	}
	var rep reply
	if err := s.recv(&rep, s.cfg.stall()+replyTimeout); err != nil {
		return Stream{}, err
	}
	res.Block, res.Bytes, res.SenderCPU = block, total, rep.CPU
	return res, nil
}

// timedServe is the child's side of that hand-shake: it says ready, waits
// for the parent's start, runs loop and replies with the CPU time the loop
// took.
func timedServe(env *childEnv, seq uint64, loop func() error) (reply, error) {
	w := waiter{stall: env.stall}
	atomic.StoreUint64(env.mem.u64(offReady), seq)
	if err := w.waitU64(env.mem.u64(offStart), seq); err != nil {
		return reply{}, fmt.Errorf("parent never started the run: %w", err)
	}
	cpu0, err := ProcessCPU()
	if err != nil {
		return reply{}, err
	}
	if err := loop(); err != nil {
		return reply{}, err
	}
	cpu1, err := ProcessCPU()
	if err != nil {
		return reply{}, err
	}
	return reply{CPU: cpu1 - cpu0}, nil
}
