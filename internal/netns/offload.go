package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h), each with a struct
// ethtool_value {u32 cmd; u32 data}. The kernel maps them onto its feature
// bits and fixes up dependent features (TSO needs TX checksumming).
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
	ethtoolGTSO    = 0x1e
	ethtoolSTSO    = 0x1f
	ethtoolGGSO    = 0x23
	ethtoolSGSO    = 0x24
	ethtoolGGRO    = 0x2b
	ethtoolSGRO    = 0x2c
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data: the name, then the pointer.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// Offloads are the offload features of an interface that change what a
// capture or a loss rule on the wire sees.
type Offloads struct {
	TXChecksum bool // the NIC (for a veth: nobody, until delivery) completes L4 checksums
	TSO        bool // TCP segmentation offload: super-segments go to the driver
	GSO        bool // generic segmentation offload, done just before the driver
	GRO        bool // generic receive offload
}

// SetOffloads turns dev's TX checksum, TSO, GSO and GRO all on or all off.
//
// Off makes a veth behave like a wire: every packet it carries is at most
// one MTU, with a complete checksum computed by the sender (so tshark's
// checksum check means something, and the receiving stack verifies it),
// and a loss rule drops one wire packet, not a 64 KiB super-packet. On is
// the veth's default and gives Linux its best throughput.
func (ns *NS) SetOffloads(dev string, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	return ns.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		// Checksum first when turning on (TSO depends on it), last when off.
		order := []uint32{ethtoolSTXCSUM, ethtoolSTSO, ethtoolSGSO, ethtoolSGRO}
		if !on {
			order = []uint32{ethtoolSGRO, ethtoolSGSO, ethtoolSTSO, ethtoolSTXCSUM}
		}
		for _, c := range order {
			if _, err := ethtool(fd, dev, c, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetOffloads reads dev's offload features.
func (ns *NS) GetOffloads(dev string) (Offloads, error) {
	var o Offloads
	err := ns.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range []struct {
			cmd uint32
			dst *bool
		}{{ethtoolGTXCSUM, &o.TXChecksum}, {ethtoolGTSO, &o.TSO}, {ethtoolGGSO, &o.GSO}, {ethtoolGGRO, &o.GRO}} {
			v, err := ethtool(fd, dev, f.cmd, 0)
			if err != nil {
				return err
			}
			*f.dst = v != 0
		}
		return nil
	})
	return o, err
}

func ethtool(fd int, dev string, cmd, data uint32) (uint32, error) {
	if len(dev) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("netns: interface name %q too long", dev)
	}
	ev := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&ev)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ev)
	if errno != 0 {
		return 0, fmt.Errorf("netns: ethtool command %#x on %s: %w", cmd, dev, errno)
	}
	return ev.data, nil
}

// do runs f on an OS thread that has joined the namespace. The thread is
// never given back to the Go scheduler (the goroutine exits still locked,
// so the runtime discards the thread): no other goroutine can ever run in
// the wrong namespace, even if switching back were to fail.
func (ns *NS) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := os.Open(filepath.Join(netnsDir, ns.Name))
		if err != nil {
			errc <- fmt.Errorf("netns: open %s: %w", ns.Name, err)
			return
		}
		defer h.Close()
		if err := unix.Setns(int(h.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: setns %s: %w", ns.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
