// Package capture writes the packets a stack sends and receives to a pcap
// file (the classic libpcap format) that tcpdump, tshark and Wireshark read.
//
// A Writer's Capture method has the signature of ultcp.Config.Capture:
//
//	w, err := capture.Create("trace.pcap")
//	s, err := ultcp.NewStack(ultcp.Config{Addr: a, Capture: w.Capture})
//	...
//	s.Close()
//	w.Close()
//
// Records use link type LINKTYPE_RAW (101): each starts with the IPv4 header,
// with no link-layer header, because the fabric has none.
//
// Inside the fabric checksums are not computed (it is memory, DESIGN.md §3),
// so the stack hands over headers with zero checksums. The writer fills in
// the IPv4 header checksum (RFC 791 §3.1) and the TCP checksum over the
// pseudo-header, header and payload (RFC 9293 §3.1) in its own copy, so the
// capture verifies in every tool.
//
// Large records: a DMA record carries up to several MiB of payload in one
// IPv4 packet whose tot_len is 0 (the BIG TCP convention: the record length
// is authoritative). pcap tools show such packets as malformed, and a
// record longer than the 65535-byte snapshot length breaks some readers. The
// writer therefore splits such a packet the way TCP segmentation offload
// would: into packets of at most 65535 bytes, each with the same options,
// its own sequence number, IP identification and checksums, FIN and PSH on
// the last piece only. The capture then shows what the same bytes would look
// like on a real link; the record boundary is lost, which is the price.
//
// The package must never modify the slices Capture is handed (they may point
// into a ring the peer reads), keep them after Capture returns, or block the
// stack on anything but the file write itself; an I/O error stops the
// capture and is reported by Err and Close, never by a panic.
package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// File format constants (libpcap's pcap-savefile(5)).
const (
	magicMicro   = 0xa1b2c3d4 // microsecond timestamps; the file is little-endian, readers detect it from this word
	versionMajor = 2
	versionMinor = 4
	// LinkTypeRaw is LINKTYPE_RAW: the packet begins with an IPv4 or IPv6
	// header.
	LinkTypeRaw = 101
	// MaxPacket is the largest IPv4 packet (tot_len is 16 bits); it is
	// also the file's snapshot length.
	MaxPacket = 65535

	// maxHeaders is the longest IPv4 header (60 bytes) plus the longest
	// TCP header (60 bytes).
	maxHeaders = 120

	fileHeaderLen   = 24
	recordHeaderLen = 16
	ipProtoTCP      = 6
)

// Options tune a Writer. The zero value captures whole packets stamped
// with the wall clock.
type Options struct {
	// SnapLen, if positive and below MaxPacket, keeps only the first
	// SnapLen bytes of each packet (the record says how long the packet
	// was). Checksums are still computed over the whole packet.
	SnapLen int
	// Now stamps the records. Default time.Now; tests pass a fake clock.
	Now func() time.Time
}

// Writer writes a pcap file. Its Capture method may be called from many
// goroutines at once.
type Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	closer  io.Closer // nil when the caller owns the underlying writer
	snap    int
	now     func() time.Time
	err     error
	packets uint64
	hdr     [recordHeaderLen + MaxPacket]byte // record header, then IPv4+TCP headers of one piece
	tmpl    [maxHeaders]byte                  // the caller's headers, copied once
}

// ErrClosed is returned by Close and Err after Close.
var ErrClosed = errors.New("capture: writer closed")

// Create creates (or truncates) the file at path and writes the pcap file
// header.
func Create(path string, opt ...Options) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	w, err := NewWriter(f, opt...)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.closer = f
	return w, nil
}

// NewWriter writes the pcap file header to dst and returns a Writer that
// appends records to it. Close flushes but does not close dst.
func NewWriter(dst io.Writer, opt ...Options) (*Writer, error) {
	var o Options
	if len(opt) > 0 {
		o = opt[0]
	}
	if o.SnapLen <= 0 || o.SnapLen > MaxPacket {
		o.SnapLen = MaxPacket
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Writer{w: bufio.NewWriterSize(dst, 256<<10), snap: o.SnapLen, now: o.Now}
	var h [fileHeaderLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], magicMicro)
	le.PutUint16(h[4:], versionMajor)
	le.PutUint16(h[6:], versionMinor)
	// h[8:16]: thiszone and sigfigs, always zero.
	le.PutUint32(h[16:], uint32(o.SnapLen))
	le.PutUint32(h[20:], LinkTypeRaw)
	if _, err := w.w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("capture: writing the file header: %w", err)
	}
	return w, nil
}

// Capture writes one packet: headers is its IPv4 and TCP header (checksums
// as the stack left them, usually zero), payload the TCP payload. out (the
// direction) is not recorded: classic pcap has no field for it, and the
// addresses tell it anyway. It has the signature of ultcp.Capture.
func (w *Writer) Capture(out bool, headers, payload []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	w.err = w.packet(headers, payload)
}

// Packets returns how many records have been written.
func (w *Writer) Packets() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.packets
}

// Err returns the error that stopped the capture, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Flush writes buffered records to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("capture: %w", err)
	}
	return w.err
}

// Close flushes the records and closes the file Create opened. Packets
// captured after Close are dropped. It returns the first error the capture
// met.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == ErrClosed {
		return ErrClosed
	}
	err := w.err
	if err == nil {
		if ferr := w.w.Flush(); ferr != nil {
			err = fmt.Errorf("capture: %w", ferr)
		}
	}
	if w.closer != nil {
		if cerr := w.closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("capture: %w", cerr)
		}
	}
	w.err = ErrClosed
	return err
}

// packet writes headers+payload as one record, or as several when the
// packet is longer than an IPv4 packet can be (see the package comment).
func (w *Writer) packet(headers, payload []byte) error {
	// Headers received may sit in a ring the peer can still write: take a
	// copy first and validate and use only the copy.
	tmpl := w.tmpl[:copy(w.tmpl[:], headers)]
	ihl, thl, ok := tcpHeaderLens(tmpl)
	if !ok || len(headers) != len(tmpl) {
		// Not an IPv4 TCP header we can complete: record the bytes as
		// they are (truncated to one packet), which is still the most
		// useful thing to show.
		b := w.hdr[recordHeaderLen:]
		n := copy(b, headers)
		n += copy(b[n:], payload)
		return w.record(b[:n], nil, len(headers)+len(payload))
	}
	hl := ihl + thl
	h := w.hdr[recordHeaderLen : recordHeaderLen+hl]
	copy(h, tmpl)
	if hl+len(payload) <= MaxPacket {
		fill(h, ihl, payload)
		return w.record(h, payload, hl+len(payload))
	}
	// Segment as TSO would (RFC 9293 §3.7.1: each piece at most the MSS a
	// 65535-byte packet allows).
	per := MaxPacket - hl
	be := binary.BigEndian
	seq := be.Uint32(tmpl[ihl+4:])
	id := be.Uint16(tmpl[4:])
	flags := tmpl[ihl+13]
	for off, i := 0, 0; off < len(payload); off, i = off+per, i+1 {
		end := min(off+per, len(payload))
		copy(h, tmpl)
		be.PutUint16(h[4:], id+uint16(i))
		s := seq + uint32(off)
		f := flags
		if off > 0 {
			if flags&flagSYN != 0 {
				s++ // the SYN took one sequence number before the data
			}
			f &^= flagSYN
		}
		if end < len(payload) {
			f &^= flagFIN | flagPSH
		}
		be.PutUint32(h[ihl+4:], s)
		h[ihl+13] = f
		fill(h, ihl, payload[off:end])
		if err := w.record(h, payload[off:end], hl+end-off); err != nil {
			return err
		}
	}
	return nil
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagPSH = 0x08
)

// tcpHeaderLens validates that headers is an IPv4 header without
// fragmentation followed by a whole TCP header, and returns both lengths.
func tcpHeaderLens(headers []byte) (ihl, thl int, ok bool) {
	if len(headers) < wire.IPv4HeaderLen || headers[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl = int(headers[0]&0x0f) * 4
	if ihl < wire.IPv4HeaderLen || headers[9] != ipProtoTCP || len(headers) < ihl+wire.TCPHeaderLen {
		return 0, 0, false
	}
	thl = int(headers[ihl+12]>>4) * 4
	if thl < wire.TCPHeaderLen || len(headers) != ihl+thl {
		return 0, 0, false
	}
	return ihl, thl, true
}

// fill sets tot_len and both checksums of h (IPv4 header of ihl bytes,
// then the TCP header) for a packet carrying payload.
func fill(h []byte, ihl int, payload []byte) {
	be := binary.BigEndian
	be.PutUint16(h[2:], uint16(len(h)+len(payload)))
	// RFC 791 §3.1: the checksum field is zero while it is computed.
	h[10], h[11] = 0, 0
	be.PutUint16(h[10:], wire.Checksum(h[:ihl]))
	var src, dst wire.IPv4Addr
	copy(src[:], h[12:16])
	copy(dst[:], h[16:20])
	tcp := h[ihl:]
	tcp[16], tcp[17] = 0, 0
	be.PutUint16(tcp[16:], wire.TCPChecksum(src, dst, tcp, payload))
}

// record writes one pcap record: the packet is head followed by tail, n
// bytes in all, cut to the snapshot length. head must be w.hdr[16:...].
func (w *Writer) record(head, tail []byte, n int) error {
	t := w.now()
	keep := min(n, w.snap)
	rh := w.hdr[:recordHeaderLen]
	le := binary.LittleEndian
	le.PutUint32(rh[0:], uint32(t.Unix()))
	le.PutUint32(rh[4:], uint32(t.Nanosecond()/1000))
	le.PutUint32(rh[8:], uint32(keep))
	le.PutUint32(rh[12:], uint32(n))
	if len(head) >= keep {
		head, tail = head[:keep], nil
	} else {
		tail = tail[:keep-len(head)]
	}
	// rh and head are contiguous in w.hdr: one write for both.
	if _, err := w.w.Write(w.hdr[:recordHeaderLen+len(head)]); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	if _, err := w.w.Write(tail); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	w.packets++
	return nil
}
