package fabric

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The futex calls use the shared (non-private) operations on purpose: the
// words live in MAP_SHARED memory that another process waits on or wakes,
// and FUTEX_PRIVATE_FLAG would key them by this process's address space.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, at most d (d < 0: no limit). It
// returns nil on a wake-up, a changed value, a signal or a timeout alike:
// every caller re-checks its condition afterwards.
//
// It yields the P first. A goroutine this one just made runnable (an
// Accept or a Read woken through a channel) sits in this P's run queue,
// and a thread blocked in a system call keeps its P: the goroutine would
// wait for sysmon to take the P back, 20 µs to 10 ms later (a timed CRR
// trace showed Accept returning ~150 µs after the engine signalled it,
// both Ps held by the event loop's and the engine's futex sleeps).
// Yielding costs ~0.1 µs when nothing else is runnable.
func futexWait(addr *uint32, val uint32, d time.Duration) {
	runtime.Gosched()
	var tsp unsafe.Pointer
	var ts unix.Timespec
	if d >= 0 {
		ts = unix.NsecToTimespec(int64(d))
		tsp = unsafe.Pointer(&ts)
	}
	syscall.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(tsp), 0, 0)
}

// futexWake wakes up to n waiters on addr. It never blocks, so it uses the
// raw form and skips the scheduler's syscall bookkeeping.
func futexWake(addr *uint32, n int) {
	syscall.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
}

// allWaiters is the futex wake count meaning "everybody".
const allWaiters = 1 << 30

// sealsWanted are the seals a peer segment and a doorbell page must carry
// before this side maps them: with them the other side can neither shrink
// the memory under us (which would turn our loads into SIGBUS) nor grow it
// nor remove the seals later.
const sealsWanted = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// newSealedMemfd creates an anonymous shared memory file of size bytes and
// seals its size. tmpfs allocates its pages on first touch only, so a large
// size reserves nothing but address space.
func newSealedMemfd(name string, size int64) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, err
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, sealsWanted); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkSealedMemfd verifies that fd, received from another process, is a
// memory file of exactly size bytes carrying sealsWanted.
func checkSealedMemfd(fd int, size int64) error {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return err
	}
	if seals&sealsWanted != sealsWanted {
		return errNotSealed
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size != size {
		return errBadSize
	}
	return nil
}

// mapShared maps size bytes of fd read-write and shared.
func mapShared(fd int, size uintptr) (unsafe.Pointer, error) {
	return unix.MmapPtr(fd, 0, nil, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// replaceWithAnon puts private zero pages in place of a shared mapping,
// keeping the addresses valid. A goroutine still touching the old mapping
// (a Recv racing with the peer's death) reads zeros and writes into private
// pages instead of faulting, and the shared memory is released.
func replaceWithAnon(p unsafe.Pointer, size uintptr) error {
	_, err := unix.MmapPtr(-1, 0, p, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
	return err
}

func unmap(p unsafe.Pointer, size uintptr) error { return unix.MunmapPtr(p, size) }

func closeFd(fd int) { unix.Close(fd) }

// futexWaitShort is futexWait for a sleep expected to be short (at most
// rawSleepBelow): it skips the scheduler's syscall bookkeeping, so the
// processor is not handed off by sysmon 20 µs into the sleep and sysmon
// itself is not kept waking every 20 µs by a stream of short sleeps. The
// cost is that this goroutine's P stays blocked for the sleep (and a
// stop-the-world waits for it). The sleep normally ends with a wake-up;
// its timeout, rawSleepTimeout, is only the bound on that cost should the
// waker stall.
func futexWaitShort(addr *uint32, val uint32) {
	ts := unix.NsecToTimespec(int64(rawSleepTimeout))
	syscall.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

const (
	// rawSleepBelow: a wait predicted shorter than this may hold its P
	// (futexWaitShort).
	rawSleepBelow = 500 * time.Microsecond
	// rawSleepTimeout is futexWaitShort's timeout. It is longer than the
	// scheduler tick (4 ms here, HZ=250) on purpose: a futex timeout that
	// is the CPU's earliest timer reprograms the clock event device when
	// the sleep starts and again when it is cancelled, which on this VM
	// (lapic-deadline timer, each write a VM exit) made a DMA sender's
	// sleep cost twice the CPU: 0.019–0.024 ns/B at 1 MiB with the
	// timeout at twice the predicted copy (~0.2 ms), 0.010–0.012 with
	// 10 ms, the same as with no timeout at all (alternating runs of
	// BenchmarkStreamDMA1M, 14:45 UTC 2026-11-25). 3 ms gave 0.015–0.016,
	// 1 ms 0.017–0.021; 5 ms as good as 10 ms (14:50, loaded machine:
	// 0.010–0.016 against 0.012–0.018).
	rawSleepTimeout = 5 * time.Millisecond
)
