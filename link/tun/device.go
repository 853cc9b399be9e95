//go:build linux

package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/netlink"
)

// How packets cross the device, and why so.
//
// Read: one read(2) per packet into the caller's buffer; the kernel writes
// the virtio-net header and the packet back to back, so Packet.Data aliases
// the buffer and nothing is copied in user space. With Offload a packet may
// be a GRO'd or locally built super-packet of up to 64 KiB, so the buffer
// must hold VnetHdrLen+MaxPacketLen bytes (ReadBufferLen): the kernel
// truncates a packet that does not fit without saying so (read returns the
// buffer's length, the rest is gone; seen on 6.18), so a short buffer is
// refused up front.
//
// Write: one writev(2) per packet of [header | Data | Payload]. The header
// lives in the Device, Data usually holds the IP and TCP headers the caller
// built, and Payload may be a view into memory the caller does not own (a
// fabric ring): the kernel copies each piece once into its socket buffer and
// nothing is copied in user space. With a 64 KiB GSO packet the system call
// is amortised over ~45 segments, which is why there is no batching API
// (recvmmsg-style batching does not exist for a TUN file descriptor; several
// queues, IFF_MULTI_QUEUE, would be the next step).
//
// The file descriptor is non-blocking and registered with Go's poller
// (os.NewFile on a non-blocking descriptor), so a blocked Read parks the
// goroutine rather than a thread, read and write deadlines work, and Close
// wakes a blocked Read with os.ErrClosed.

// Errors Open fails with, besides those about its arguments.
var (
	// ErrNoDevice: the TUN clone device is missing (no /dev/net/tun, or the
	// tun module is not loaded).
	ErrNoDevice = errors.New("tun: no TUN device (/dev/net/tun missing or tun module not loaded)")
	// ErrPermission: the caller lacks CAP_NET_ADMIN (or may not open
	// /dev/net/tun).
	ErrPermission = errors.New("tun: permission denied (creating a TUN device needs CAP_NET_ADMIN)")
	// ErrNameInUse: a network interface of that name already exists.
	ErrNameInUse = errors.New("tun: interface name in use")
	// ErrDown: a Write while the interface is administratively down.
	ErrDown = errors.New("tun: interface is down")
	// ErrBufferTooSmall: a Read buffer that cannot hold the largest packet.
	ErrBufferTooSmall = errors.New("tun: read buffer too small")
)

// ReadBufferLen is the smallest buffer Read accepts: a header and the largest
// packet.
const ReadBufferLen = VnetHdrLen + MaxPacketLen

// DefaultPath is the TUN clone device.
const DefaultPath = "/dev/net/tun"

// Config says which device to make.
type Config struct {
	// Name is the interface's name, at most 15 bytes; "" lets the kernel
	// choose (tun0, tun1, ...). A name already in use is ErrNameInUse:
	// Open always makes a new device (IFF_TUN_EXCL), never attaches to
	// someone else's.
	Name string
	// MTU, if not 0, is set on the new device (68 to 65535).
	MTU int
	// Offload turns on checksum offload and TCP segmentation offload
	// (TUNSETOFFLOAD with TUN_F_CSUM|TUN_F_TSO4): the kernel may hand over
	// packets with a partial checksum and TCP super-packets, and accepts
	// them. Without it every packet read is a whole one with its checksums
	// done, but writes may still carry NeedsCsum and GSO.
	Offload bool

	// path is the clone device; "" is DefaultPath (tests point it
	// elsewhere).
	path string
}

// Device is an open TUN device. Read and Write may be called concurrently;
// concurrent Writes are serialised.
type Device struct {
	f       *os.File
	rc      syscall.RawConn
	name    string
	offload bool
	closed  atomic.Bool

	// Write's state: writeFn, made once in Open, reads iov and leaves its
	// result in wn and werr, so a Write allocates nothing.
	wmu     sync.Mutex
	hdr     [VnetHdrLen]byte
	iov     [3]unix.Iovec
	niov    int
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

// Open creates a TUN device as cfg says: layer 3 (IFF_TUN), no packet
// information prefix (IFF_NO_PI), a virtio-net header on every packet
// (IFF_VNET_HDR, 10 bytes, little endian). The device lives in the network
// namespace of the calling thread and disappears when it is closed; a
// caller that moved its thread to another namespace must keep it locked
// (runtime.LockOSThread) across Open.
func Open(cfg Config) (*Device, error) {
	if len(cfg.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: interface name %q longer than %d bytes: %w", cfg.Name, unix.IFNAMSIZ-1, unix.EINVAL)
	}
	if cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > MaxPacketLen) {
		// RFC 791 §3.2: every IPv4 link carries 68-byte datagrams.
		return nil, fmt.Errorf("tun: MTU %d outside 68..%d: %w", cfg.MTU, MaxPacketLen, unix.EINVAL)
	}
	path := cfg.path
	if path == "" {
		path = DefaultPath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		switch err {
		case unix.ENOENT, unix.ENODEV, unix.ENXIO:
			return nil, fmt.Errorf("%w: open %s: %w", ErrNoDevice, path, err)
		case unix.EACCES, unix.EPERM:
			return nil, fmt.Errorf("%w: open %s: %w", ErrPermission, path, err)
		}
		return nil, fmt.Errorf("tun: open %s: %w", path, err)
	}
	name, err := setup(fd, cfg)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	d := &Device{name: name, offload: cfg.Offload}
	// fd is non-blocking, so os.NewFile registers it with the poller.
	d.f = os.NewFile(uintptr(fd), "tun:"+name)
	if d.rc, err = d.f.SyscallConn(); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("tun %s: %w", name, err)
	}
	d.writeFn = d.writev
	if cfg.MTU != 0 {
		if err := netlink.SetMTU(name, cfg.MTU); err != nil {
			d.f.Close()
			return nil, fmt.Errorf("tun %s: %w", name, err)
		}
	}
	return d, nil
}

// setup makes fd a TUN device and returns the name the kernel gave it.
func setup(fd int, cfg Config) (string, error) {
	ifr, err := unix.NewIfreq(cfg.Name)
	if err != nil {
		return "", fmt.Errorf("tun: interface name %q: %w", cfg.Name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch err {
		case unix.EPERM, unix.EACCES:
			return "", fmt.Errorf("%w: TUNSETIFF %q: %w", ErrPermission, cfg.Name, err)
		case unix.EBUSY, unix.EEXIST:
			// IFF_TUN_EXCL: any interface with this name, TUN or not.
			return "", fmt.Errorf("%w: %q: %w", ErrNameInUse, cfg.Name, err)
		}
		return "", fmt.Errorf("tun: TUNSETIFF %q: %w", cfg.Name, err)
	}
	name := ifr.Name()
	// The header is struct virtio_net_hdr (10 bytes; the kernel's default,
	// set so that a changed default cannot shift every packet), and little
	// endian whatever the host's byte order (TUNSETVNETLE; without it a
	// legacy header is in host order), so the codec is the same everywhere.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return "", fmt.Errorf("tun %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return "", fmt.Errorf("tun %s: TUNSETVNETLE: %w", name, err)
	}
	offload := 0
	if cfg.Offload {
		offload = unix.TUN_F_CSUM | unix.TUN_F_TSO4
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offload); err != nil {
		return "", fmt.Errorf("tun %s: TUNSETOFFLOAD %#x: %w", name, offload, err)
	}
	return name, nil
}

// Name is the interface's name.
func (d *Device) Name() string { return d.name }

// Offload reports whether checksum and segmentation offload are on.
func (d *Device) Offload() bool { return d.offload }

// Read reads one packet into buf, which must be at least ReadBufferLen bytes:
// buf[:VnetHdrLen] receives the header and the returned Packet's Data is
// buf[VnetHdrLen:n]. It blocks until a packet comes, the read deadline
// passes (an error wrapping os.ErrDeadlineExceeded) or the device is closed
// (os.ErrClosed). A packet whose header does not parse is consumed and
// reported as an error (ErrBadVnetHdr, ErrBadGSO); the next Read goes on.
func (d *Device) Read(buf []byte) (Packet, error) {
	if len(buf) < ReadBufferLen {
		return Packet{}, fmt.Errorf("%w: %d bytes, want %d (tun.ReadBufferLen)", ErrBufferTooSmall, len(buf), ReadBufferLen)
	}
	n, err := d.f.Read(buf)
	if err != nil {
		return Packet{}, err
	}
	p, err := DecodePacket(buf[:n])
	if err != nil {
		return Packet{}, fmt.Errorf("read %s: %w", d.name, err)
	}
	return p, nil
}

// Write writes one packet: Data followed by Payload, preceded by the header
// p describes. A GSO packet is cut into segments by the kernel; a packet
// with NeedsCsum gets its checksum finished by it. The header is checked
// first (ErrBadGSO, ErrBadVnetHdr, ErrTooBig); a packet the kernel still
// refuses is an error wrapping its errno (EINVAL for a packet that is not
// IPv4 or IPv6, or whose GSO fields the kernel rejects; ErrDown and EIO
// while the interface is down). Write honours the
// write deadline and returns os.ErrClosed after Close. It keeps no
// reference to p's memory once it returns.
func (d *Device) Write(p Packet) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := p.EncodeVnetHdr(d.hdr[:]); err != nil {
		return fmt.Errorf("write %s: %w", d.name, err)
	}
	if len(p.Data) == 0 {
		return fmt.Errorf("write %s: %w: no packet after the header", d.name, ErrBadVnetHdr)
	}
	d.iov[0] = unix.Iovec{Base: &d.hdr[0], Len: VnetHdrLen}
	d.iov[1] = unix.Iovec{Base: &p.Data[0], Len: uint64(len(p.Data))}
	d.niov = 2
	if len(p.Payload) > 0 {
		d.iov[2] = unix.Iovec{Base: &p.Payload[0], Len: uint64(len(p.Payload))}
		d.niov = 3
	}
	d.wn, d.werr = 0, 0
	err := d.rc.Write(d.writeFn)
	d.iov = [3]unix.Iovec{} // hold no reference to the caller's memory
	if err != nil {
		// The poller's: os.ErrDeadlineExceeded, or its own "use of closed
		// file", which os.File's methods (but not RawConn's) turn into
		// os.ErrClosed; do the same.
		if d.closed.Load() {
			err = os.ErrClosed
		}
		return &os.PathError{Op: "write", Path: d.f.Name(), Err: err}
	}
	if d.werr == unix.EIO {
		// tun_get_user refuses packets while the interface is down.
		return fmt.Errorf("write %s: %w: %w", d.name, ErrDown, d.werr)
	}
	if d.werr != 0 {
		return fmt.Errorf("tun %s: write of %d bytes: kernel refused the packet: %w", d.name, p.Len(), d.werr)
	}
	if want := VnetHdrLen + p.Len(); d.wn != want {
		// A TUN write takes the whole packet or nothing; anything else
		// would be a kernel we do not understand.
		return fmt.Errorf("tun %s: short write: %d of %d bytes: %w", d.name, d.wn, want, unix.EIO)
	}
	return nil
}

// writev is the poller callback of Write; false asks to wait for the fd.
func (d *Device) writev(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&d.iov[0])), uintptr(d.niov))
	if e == unix.EAGAIN {
		return false
	}
	if e == unix.EINTR {
		return d.writev(fd)
	}
	d.wn, d.werr = int(n), e
	return true
}

// SetReadDeadline sets the deadline for Read, as os.File's does.
func (d *Device) SetReadDeadline(t time.Time) error { return d.f.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for Write, as os.File's does.
func (d *Device) SetWriteDeadline(t time.Time) error { return d.f.SetWriteDeadline(t) }

// Close closes the device, which removes the interface, and wakes a blocked
// Read or Write with os.ErrClosed.
func (d *Device) Close() error {
	d.closed.Store(true)
	return d.f.Close()
}
