package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Inspection of a running fabric from outside (ultcp stat). It must never
// change what it looks at: no Open (which creates the directory and removes
// stale entries), no connection to a node socket, no write and no mapping
// of shared memory. It reads the peer segments with pread through a
// descriptor of its own, opened from /proc/<pid>/fd of a node that keeps
// the segment's memfd open: pread of a page nobody touched reads zeros
// without allocating it (a read fault through a mapping would), cannot
// fault, and a segment shorter than its header says gives a short read,
// not SIGBUS. What it reads is parsed by the code the nodes use
// (makeLayout, checkHeader, checkRingPair, consumer.peek), on private
// copies, so garbage yields an error or -1, never a panic.

// Snapshot is what Inspect saw. The fabric keeps running while it reads,
// so the figures of different connections are from slightly different
// moments.
type Snapshot struct {
	Dir      string
	Nodes    []NodeInfo
	Segments []SegmentInfo // each peer segment once, however many nodes map it
}

// NodeInfo is one registered node.
type NodeInfo struct {
	Addr    netip.Addr
	Pid     int  // from <addr>.pid; 0 if unreadable
	Running bool // a process with that pid exists (it may be a recycled pid: the node's socket tells)
	// Err says why this node's segments could not be read (no such
	// process, no permission to read its descriptors: Inspect needs the
	// same uid, or root).
	Err error
}

// SegmentInfo is one peer segment. Side 0 created it (dialled first).
type SegmentInfo struct {
	Inode uint64
	Size  int64
	// Identity of each side as the header says (informative: the nodes
	// themselves trust the kernel, not these fields).
	Addr       [2]netip.Addr
	Pid        [2]int
	Generation [2]uint64
	MaxConns   int
	// SlabUsed is the slab space of each side held by the connections
	// listed (each side allocates the rings of the connections it dials).
	SlabUsed [2]int64
	Conns    []ConnInfo
	// Err says why the segment was read only in part (its connections may
	// then be incomplete), or not at all.
	Err error
}

// ConnInfo is one connection whose pair is allocated.
type ConnInfo struct {
	Dialer   int    // the side that opened it (its table and slab hold the pair)
	ID       uint32 // its index in the dialler's table
	RingSize int
	Block    uint64  // offset of the pair in the dialler's slab
	Closed   [2]bool // side s called Close (both: the pair is about to be freed)
	// Occupancy[s] is the number of bytes side s has published and the
	// other side has not yet reported consumed: the records from the
	// consumer's published tail (published in batches of a quarter ring,
	// so this includes up to that much already read) to the first empty
	// header. -1: the ring could not be read consistently (it moved
	// faster than Inspect read it, or holds garbage).
	Occupancy [2]int
	Records   [2]int  // how many records that is
	DMA       [2]bool // among them a DMA record, whose sender waits for its completion
	// Asleep[s]: the consumer of the ring from side s armed its tripwire
	// (a goroutine or the node's event loop waits for the next record).
	Asleep [2]bool
}

// State describes the connection's close state.
func (c ConnInfo) State() string {
	switch {
	case c.Closed[0] && c.Closed[1]:
		return "closed"
	case c.Closed[0]:
		return "closing (side 0 closed)"
	case c.Closed[1]:
		return "closing (side 1 closed)"
	}
	return "open"
}

// Inspect reads the running fabric cfg names (Dir or Name; the other
// fields are ignored) from outside, without joining or changing it: see
// the comment at the top of inspect.go. The nodes are the <addr>.pid files
// of the directory; the segments are found through the descriptors the
// nodes keep open.
func Inspect(cfg Config) (*Snapshot, error) {
	dir, err := cfg.dir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	s := &Snapshot{Dir: dir}
	seen := map[uint64]bool{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		addr, err := netip.ParseAddr(name)
		if err != nil {
			continue
		}
		ni := NodeInfo{Addr: addr}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			ni.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if ni.Pid > 0 {
			_, err := os.Stat("/proc/" + strconv.Itoa(ni.Pid))
			ni.Running = err == nil
			ni.Err = s.readSegments(ni.Pid, seen)
		} else {
			ni.Err = errors.New("no pid recorded")
		}
		s.Nodes = append(s.Nodes, ni)
	}
	slices.SortFunc(s.Nodes, func(a, b NodeInfo) int { return a.Addr.Compare(b.Addr) })
	slices.SortFunc(s.Segments, func(a, b SegmentInfo) int {
		if c := a.Addr[0].Compare(b.Addr[0]); c != 0 {
			return c
		}
		return a.Addr[1].Compare(b.Addr[1])
	})
	return s, nil
}

// readSegments reads every peer segment process pid holds open that is
// not in seen yet.
func (s *Snapshot) readSegments(pid int, seen map[uint64]bool) error {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return err
	}
	var firstErr error
	for _, e := range ents {
		path := filepath.Join(fdDir, e.Name())
		target, err := os.Readlink(path)
		if err != nil || !strings.HasPrefix(target, "/memfd:ultcp-segment") {
			continue
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || seen[st.Ino] {
			unix.Close(fd)
			continue
		}
		seen[st.Ino] = true
		si := inspectSegment(fd, st.Size)
		si.Inode = st.Ino
		s.Segments = append(s.Segments, si)
		unix.Close(fd)
	}
	return firstErr
}

// inspectSegment reads one segment through fd (read-only, never mapped).
func inspectSegment(fd int, size int64) SegmentInfo {
	si := SegmentInfo{Size: size}
	var hdr [pageSize]byte
	if err := preadFull(fd, hdr[:], 0); err != nil {
		si.Err = fmt.Errorf("header: %w", err)
		return si
	}
	le := binary.LittleEndian
	l, err := makeLayout(params{le.Uint64(hdr[hdrCtlRing:]), le.Uint64(hdr[hdrMaxConns:]), le.Uint64(hdr[hdrSlab:])})
	if err != nil {
		si.Err = err
		return si
	}
	if err := l.checkHeader(unsafe.Pointer(&hdr[0])); err != nil {
		si.Err = err
		return si
	}
	if uint64(size) != l.size {
		si.Err = fmt.Errorf("segment of %d bytes, its header says %d", size, l.size)
		return si
	}
	for side := range 2 {
		si.Pid[side] = int(le.Uint64(hdr[hdrPid+8*side:]))
		si.Generation[side] = le.Uint64(hdr[hdrGen+8*side:])
		si.Addr[side] = netip.AddrFrom4([4]byte(hdr[hdrAddr+4*side:]))
	}
	si.MaxConns = int(l.maxConns)
	var w ringWalker
	for side := range 2 {
		if err := si.readTable(fd, &l, side, &w); err != nil && si.Err == nil {
			si.Err = err
		}
	}
	return si
}

// readTable lists the connections of side's table. Only the table's pages
// that hold data are read (SEEK_DATA): a table is mostly holes.
func (si *SegmentInfo) readTable(fd int, l *layout, side int, w *ringWalker) error {
	start := int64(l.conns[side])
	end := start + int64(l.maxConns*2*ctlBlockSize)
	var chunk [64 << 10]byte
	for off := start; off < end; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil || data >= end {
			return nil // ENXIO: no data after off
		}
		data -= (data - start) % (2 * ctlBlockSize)
		n := min(int64(len(chunk)), end-data)
		if err := preadFull(fd, chunk[:n], data); err != nil {
			return fmt.Errorf("connection table %d: %w", side, err)
		}
		for p := int64(0); p+2*ctlBlockSize <= n; p += 2 * ctlBlockSize {
			pair := chunk[p : p+2*ctlBlockSize]
			id := uint32((data + p - start) / (2 * ctlBlockSize))
			if ci, ok, err := inspectConn(fd, l, side, id, pair, w); err != nil {
				if si.Err == nil {
					si.Err = err
				}
			} else if ok {
				si.Conns = append(si.Conns, ci)
				si.SlabUsed[side] += 2 * int64(ci.RingSize)
			}
		}
		off = data + n
	}
	return nil
}

// inspectConn reads connection id of side's table from its two control
// blocks (pair, a private copy). ok is false for a free entry.
func inspectConn(fd int, l *layout, side int, id uint32, pair []byte, w *ringWalker) (ConnInfo, bool, error) {
	le := binary.LittleEndian
	info := le.Uint64(pair[offConnInfo:])
	if info&infoOpen == 0 {
		return ConnInfo{}, false, nil
	}
	size, block := info&0xffffffff, le.Uint64(pair[offConnBlock:])
	if err := l.checkRingPair(id, block, size); err != nil {
		return ConnInfo{}, false, fmt.Errorf("connection %d of side %d: %v", id, side, err)
	}
	ci := ConnInfo{Dialer: side, ID: id, RingSize: int(size), Block: block}
	for dir := range 2 { // 0: the ring from the dialler, 1: towards it
		from := side ^ dir
		ctl := pair[dir*ctlBlockSize : (dir+1)*ctlBlockSize]
		ci.Closed[from] = le.Uint64(ctl[offConnInfo:])&infoClosed != 0
		ci.Asleep[from] = le.Uint32(ctl[offConsArmed:])&(armSleeper|armNode) != 0
		dataOff := int64(l.slab[side] + block + uint64(dir)*size)
		ci.Occupancy[from], ci.Records[from], ci.DMA[from] = w.walk(fd, dataOff, size, le.Uint64(ctl[offTail:]))
	}
	return ci, true, nil
}

// ringWalker measures a ring's occupancy on a private copy of it, with the
// consumer's own parsing (consumer.peek), so that the checks are the ones
// a node applies.
type ringWalker struct {
	buf []byte
}

// walk counts the records from tail to the first empty header of the
// ring of size bytes at dataOff; -1 bytes if the ring cannot be read or
// parsed, or has no empty header within one lap.
func (w *ringWalker) walk(fd int, dataOff int64, size, tail uint64) (bytes, records int, dma bool) {
	if tail%recHdr != 0 {
		return -1, 0, false // records are 8-byte aligned: garbage
	}
	x := tail & (size - 1)
	var first [recHdr]byte
	if preadFull(fd, first[:], dataOff+int64(x)) != nil {
		return -1, 0, false
	}
	if binary.LittleEndian.Uint64(first[:]) == 0 {
		return 0, 0, false // empty: the common case costs one small read
	}
	if uint64(cap(w.buf)) < size {
		w.buf = make([]byte, size)
	}
	buf := w.buf[:size]
	if preadFull(fd, buf, dataOff) != nil {
		return -1, 0, false
	}
	c := newConsumer(ringMem{data: unsafe.Pointer(&buf[0]), size: size})
	c.tail = tail
	for {
		kind, _, err := c.peek()
		if err != nil || c.tail-tail > size {
			return -1, 0, false
		}
		if kind == 0 {
			return int(c.tail - tail), records, dma
		}
		records++
		dma = dma || kind == kindDMA
		c.tail += c.curRec // not release: that would publish
		c.curRec, c.curBody = 0, nil
		if c.tail-tail > size {
			return -1, 0, false
		}
	}
}

// preadFull reads len(b) bytes at off or fails.
func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("short read")
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
