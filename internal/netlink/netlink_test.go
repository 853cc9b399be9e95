package netlink

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// privateNetns moves the calling goroutine's thread into a new, empty
// network namespace, so that nothing a test does touches the machine's
// own. The thread stays locked to the goroutine and dies with it (a locked
// goroutine that exits takes its thread along), so the namespace never leaks
// to other goroutines. Everything namespace-bound (sockets, TUN devices)
// must be created by the test goroutine itself, not in subtests.
func privateNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to make a private network namespace")
	}
	runtime.LockOSThread() // never unlocked, on purpose (see above)
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatalf("reading this thread's namespace: %v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	after, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil || after == before {
		t.Fatalf("thread still in namespace %s after unshare (%v): refusing to go on", before, err)
	}
}

// makeTun creates a TUN device called name in the current namespace with the
// bare ioctl (this package does not create links); it lives until the
// returned fd is closed.
func makeTun(t testing.TB, name string) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/net/tun: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF %s: %v", name, err)
	}
}

func TestLinkByNameFindsLoopbackDown(t *testing.T) {
	privateNetns(t)
	l, err := LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// A new namespace has only lo, index 1, MTU 65536, down.
	if l.Index != 1 || l.Name != "lo" || l.MTU != 65536 || l.Up() {
		t.Fatalf("lo in a new namespace: %+v; want index 1, MTU 65536, down", l)
	}
}

func TestLinkUpSetsIFFUP(t *testing.T) {
	privateNetns(t)
	if err := LinkUp("lo"); err != nil {
		t.Fatal(err)
	}
	l, err := LinkByName("lo")
	if err != nil || !l.Up() {
		t.Fatalf("after LinkUp: %+v, %v; want up", l, err)
	}
}

func TestSetMTUChangesMTU(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	if err := SetMTU("nltest0", 1400); err != nil {
		t.Fatal(err)
	}
	if l, err := LinkByName("nltest0"); err != nil || l.MTU != 1400 {
		t.Fatalf("after SetMTU 1400: %+v, %v", l, err)
	}
}

func TestSetMTUBelowMinimumIsEINVAL(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	err := SetMTU("nltest0", 67) // TUN's minimum is 68 (RFC 791: every host accepts 68)
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("SetMTU 67: %v, want EINVAL", err)
	}
	t.Log(err)
}

func TestMissingLinkIsENODEV(t *testing.T) {
	privateNetns(t)
	for name, err := range map[string]error{
		"LinkIndex": func() error { _, err := LinkIndex("nosuch0"); return err }(),
		"LinkUp":    LinkUp("nosuch0"),
		"SetMTU":    SetMTU("nosuch0", 1500),
		"AddAddr":   AddAddr("nosuch0", netip.MustParsePrefix("10.99.0.1/24")),
		"AddRoute":  AddRoute(netip.MustParsePrefix("10.77.0.0/16"), "nosuch0"),
		"DelLink":   DelLink("nosuch0"),
	} {
		if !errors.Is(err, unix.ENODEV) {
			t.Errorf("%s on a missing link: %v, want ENODEV", name, err)
		}
	}
}

func TestAddAddrTwiceIsEEXIST(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	p := netip.MustParsePrefix("10.99.0.1/24")
	if err := AddAddr("nltest0", p); err != nil {
		t.Fatal(err)
	}
	err := AddAddr("nltest0", p)
	if !errors.Is(err, unix.EEXIST) || !errors.Is(err, os.ErrExist) {
		t.Fatalf("second AddAddr: %v, want EEXIST", err)
	}
	t.Log(err)
}

func TestAddAddrRejectsIPv6(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	if err := AddAddr("nltest0", netip.MustParsePrefix("fd00::1/64")); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("AddAddr IPv6: %v, want EINVAL", err)
	}
}

func TestAddRouteOnDownLinkIsENETDOWN(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	err := AddRoute(netip.MustParsePrefix("10.77.0.0/16"), "nltest0")
	if !errors.Is(err, unix.ENETDOWN) {
		t.Fatalf("AddRoute via a down link: %v, want ENETDOWN", err)
	}
	t.Log(err)
}

func TestAddRouteThenRouteLookupUsesLink(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	if err := LinkUp("nltest0"); err != nil {
		t.Fatal(err)
	}
	if err := AddAddr("nltest0", netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := AddRoute(netip.MustParsePrefix("10.77.0.0/16"), "nltest0"); err != nil {
		t.Fatal(err)
	}
	// The kernel now routes 10.77.1.2 through the link: a UDP socket
	// connected there gets the link's address as its source.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 77, 1, 2}}); err != nil {
		t.Fatalf("connect to 10.77.1.2 after AddRoute: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := sa.(*unix.SockaddrInet4).Addr; got != [4]byte{10, 99, 0, 1} {
		t.Fatalf("source address for 10.77.1.2: %v, want 10.99.0.1", got)
	}
	if err := AddRoute(netip.MustParsePrefix("10.77.0.0/16"), "nltest0"); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second AddRoute: %v, want EEXIST", err)
	}
}

func TestAddRouteRejectsHostBits(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	if err := AddRoute(netip.MustParsePrefix("10.77.0.1/16"), "nltest0"); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("AddRoute 10.77.0.1/16: %v, want EINVAL", err)
	}
}

func TestWithoutRouteConnectIsENETUNREACH(t *testing.T) {
	// The counterpart of the test above: without AddRoute, nothing reaches
	// 10.77.1.2, so the route there really came from AddRoute.
	privateNetns(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 77, 1, 2}}); !errors.Is(err, unix.ENETUNREACH) {
		t.Fatalf("connect without a route: %v, want ENETUNREACH", err)
	}
}

func TestDelLinkRemovesLink(t *testing.T) {
	privateNetns(t)
	makeTun(t, "nltest0")
	if err := DelLink("nltest0"); err != nil {
		t.Fatal(err)
	}
	if _, err := LinkIndex("nltest0"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("LinkIndex after DelLink: %v, want ENODEV", err)
	}
}

func TestBadNamesAreEINVALBeforeAsking(t *testing.T) {
	for _, name := range []string{"", "sixteen-bytes-xx", "a/b", "a:b", "a b"} {
		if err := LinkUp(name); !errors.Is(err, unix.EINVAL) {
			t.Errorf("LinkUp(%q): %v, want EINVAL", name, err)
		}
	}
}

func TestWithoutCapNetAdminIsEPERM(t *testing.T) {
	privateNetns(t)
	dropCapNetAdmin(t)
	err := LinkUp("lo")
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("LinkUp without CAP_NET_ADMIN: %v, want EPERM", err)
	}
	t.Log(err)
}

// dropCapNetAdmin removes CAP_NET_ADMIN from this thread's effective set
// (capabilities are per thread; the thread is locked and dies with the test).
func dropCapNetAdmin(t testing.TB) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	data[unix.CAP_NET_ADMIN/32].Effective &^= 1 << (unix.CAP_NET_ADMIN % 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
}
