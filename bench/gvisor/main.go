// Command bench-gvisor is the gvisor transport of `ultcp bench`: a
// gVisor netstack in each of two processes, joined by a link endpoint
// both can share, speaking the harness's roles (package bench) so that
// `ultcp bench` measures it like any other transport.
//
// It lives in its own module so that gVisor never enters the core
// module's dependencies; the harness builds it at run time with `go build`
// and reports, instead of failing, when that cannot be done (for example
// when the module proxy does not serve gvisor.dev/gvisor@go).
//
// The link is fdbased over an AF_UNIX SOCK_SEQPACKET socketpair whose ends
// the harness passes as fd 3: one IPv4 packet per datagram, no Ethernet
// header, so no ARP. gVisor's sharedmem link would avoid the syscalls but
// needs queue setup both sides must agree on; fdbased is the link gVisor's
// own sandbox uses between processes.
//
// It must never run anything but the two roles, and never outlive the
// harness (the harness sets PR_SET_PDEATHSIG).
//
//	bench-gvisor server
//	bench-gvisor client ADDR:PORT
package main

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ultcp/ultcp/bench"
)

const (
	linkFD = 3
	nic    = 1
	port   = 5001
	// The largest IPv4 packet: one datagram of the socketpair each.
	mtu  = 65535
	link = "fdbased over an AF_UNIX SOCK_SEQPACKET socketpair, MTU 65535, 8 MiB send buffer, checksum offload"
	// linkSndBuf is the send buffer asked for on the link's fd: above the
	// 4 MiB gVisor's TCP receive buffer grows to by default, so the whole
	// window fits in the socket.
	linkSndBuf = 8 << 20
)

var (
	serverAddr = netip.MustParseAddr("10.78.0.1")
	clientAddr = netip.MustParseAddr("10.78.0.2")
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench-gvisor: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if err := bench.PinFromEnv(); err != nil {
		return err
	}
	if len(args) == 0 || (args[0] == "client" && len(args) < 2) {
		return fmt.Errorf("usage: bench-gvisor server | client ADDR:PORT")
	}
	me := serverAddr
	if args[0] == "client" {
		me = clientAddr
	}
	s, err := newStack(me, linkFD)
	if err != nil {
		return err
	}
	defer s.Close()
	switch args[0] {
	case "server":
		l, err := gonet.ListenTCP(s, fullAddr(serverAddr), ipv4.ProtocolNumber)
		if err != nil {
			return err
		}
		return bench.Serve(bench.NetListener(l), netip.AddrPortFrom(serverAddr, port).String(), link)
	case "client":
		ap, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return err
		}
		return bench.Client(func(bool) (bench.Conn, error) {
			c, err := gonet.DialTCP(s, fullAddr(ap.Addr()), ipv4.ProtocolNumber)
			if err != nil {
				return nil, err
			}
			return bench.NetConn(c), nil
		}, link)
	}
	return fmt.Errorf("unknown role %q", args[0])
}

func fullAddr(a netip.Addr) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nic, Addr: tcpip.AddrFrom4(a.As4()), Port: port}
}

// newStack builds one gVisor stack owning address me, its only NIC an
// fdbased link on fd (one IPv4 packet per datagram).
func newStack(me netip.Addr, fd int) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	if err := growSendBuffer(fd, linkSndBuf); err != nil {
		return nil, err
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs:               []int{fd},
		MTU:               mtu,
		TXChecksumOffload: true,
		RXChecksumOffload: true,
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased link on fd %d: %w", fd, err)
	}
	if e := s.CreateNIC(nic, ep); e != nil {
		return nil, fmt.Errorf("CreateNIC: %s", e)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(me.As4()).WithPrefix()}
	if e := s.AddProtocolAddress(nic, pa, stack.AddressProperties{}); e != nil {
		return nil, fmt.Errorf("AddProtocolAddress: %s", e)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nic}})
	// Nagle off, as for every other transport (TCP_NODELAY).
	opt := tcpip.TCPDelayEnabled(false)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); e != nil {
		return nil, fmt.Errorf("TCPDelayEnabled: %s", e)
	}
	return s, nil
}

// growSendBuffer raises fd's send buffer to n bytes: SO_SNDBUFFORCE when
// the process may (root), else SO_SNDBUF, which the kernel caps at
// net.core.wmem_max. It is an error only when neither works.
func growSendBuffer(fd, n int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n); err == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n); err != nil {
		return fmt.Errorf("SO_SNDBUF %d on the link fd %d: %w", n, fd, err)
	}
	return nil
}
