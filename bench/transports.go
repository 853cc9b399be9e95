package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/proc"
)

// Transport short names, as --transports takes them.
const (
	UlTCP     = "ultcp"
	UlTCPZC   = "ultcp-zc"
	Fabric    = "fabric"
	KernelTCP = "kernel-tcp"
	Unix      = "unix"
	GVisor    = "gvisor"
	NetPIPE   = "netpipe"
)

// Transports lists every transport in the order of the tables.
var Transports = []TransportInfo{
	{UlTCP, "ultcp over the fabric, PIO only (DMA threshold off): one copy into the peer's ring, one out"},
	{UlTCPZC, "ultcp with its default DMA threshold (256 KiB): larger writes are pulled by the receiver (process_vm_readv), no copy on the sender"},
	{Fabric, "raw fabric records, no TCP/IP: PIO below 256 KiB, DMA at and above; the floor under ultcp"},
	{KernelTCP, "Go's net over loopback TCP (127.0.0.1), TCP_NODELAY"},
	{Unix, "Go's net over Unix stream sockets"},
	{GVisor, "gVisor netstack (gonet), one stack per process, separate module bench/gvisor built at run time"},
	{NetPIPE, "Debian's NetPIPE NPtcp over loopback, its own sweep and timing (not interleaved)"},
}

// TransportInfo names and describes a transport.
type TransportInfo struct {
	Name        string
	Description string
}

// The roles of the transports built into this binary.
const (
	roleServer = "bench-server"
	roleClient = "bench-client"
)

func init() {
	proc.Register(roleServer, func(args []string) error { return runRole(args, true) })
	proc.Register(roleClient, func(args []string) error { return runRole(args, false) })
}

// Fabric nodes of a pair; every pair has its own fabric directory.
var (
	serverAddr = netip.MustParseAddr("10.77.0.1")
	clientAddr = netip.MustParseAddr("10.77.0.2")
)

// Ring sizes for raw fabric: PIO records of up to 1 MiB in a 4 MiB ring so
// the sender runs a record ahead; DMA records carry only a descriptor.
const (
	fabricRing   = 4 << 20
	fabricRecord = 1 << 20
	// crrRing is the ring of a connection-rate connection: one byte each
	// way needs the smallest ring the fabric makes, and 4 MiB rings would
	// fill the peer slab faster than closed ones are reclaimed.
	crrRing   = 4 << 10
	dmaFrom   = 256 << 10 // same as ultcp's default DMA threshold
	ultcpPort = 5001
)

// runRole is a child: args are the transport, a scratch directory (fabric
// dir or socket dir) and the CPU to pin to (-1: none), plus the server's
// address for a client.
func runRole(args []string, server bool) error {
	if len(args) < 3 || (!server && len(args) < 4) {
		return fmt.Errorf("bench role: want transport, dir, cpu[, addr]; got %q", args)
	}
	t, dir := args[0], args[1]
	if cpu, err := strconv.Atoi(args[2]); err != nil {
		return fmt.Errorf("bench role: cpu %q: %w", args[2], err)
	} else if err := pinAll(cpu); err != nil {
		return err
	}
	args = append(args[:2:2], args[3:]...)
	if prefix := os.Getenv(profileEnv); prefix != "" {
		side := "client"
		if server {
			side = "server"
		}
		stop, err := startProfile(fmt.Sprintf("%s-%s-%s.pprof", prefix, t, side))
		if err != nil {
			return err
		}
		defer stop()
	}
	switch t {
	case UlTCP, UlTCPZC:
		cfg := ultcp.Config{Addr: serverAddr, FabricDir: dir}
		if !server {
			cfg.Addr = clientAddr
		}
		if t == UlTCP {
			cfg.DMAThreshold = -1
		}
		s, err := ultcp.NewStack(cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		if server {
			l, err := s.Listen("tcp", fmt.Sprintf(":%d", ultcpPort))
			if err != nil {
				return err
			}
			return Serve(NetListener(l), l.Addr().String(), "fabric "+dir)
		}
		return Client(func(bool) (Conn, error) {
			c, err := s.Dial("tcp", args[2])
			if err != nil {
				return nil, err
			}
			return NetConn(c), nil
		}, "fabric "+dir)
	case Fabric:
		f, err := fabric.Open(fabric.Config{Dir: dir})
		if err != nil {
			return err
		}
		me := serverAddr
		if !server {
			me = clientAddr
		}
		n, err := f.Join(me)
		if err != nil {
			return err
		}
		defer n.Close()
		if server {
			return Serve(fabricListener{n}, serverAddr.String(), "fabric "+dir)
		}
		return Client(func(pingPong bool) (Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ring := fabricRing
			if !pingPong {
				ring = crrRing
			}
			c, err := n.Dial(ctx, serverAddr, fabric.ConnConfig{RingSize: ring})
			if err != nil {
				return nil, err
			}
			return fabricConn{c}, nil
		}, "fabric "+dir)
	case KernelTCP, Unix:
		network, laddr := "tcp", "127.0.0.1:0"
		if t == Unix {
			network, laddr = "unix", filepath.Join(dir, "bench.sock")
		}
		if server {
			l, err := net.Listen(network, laddr)
			if err != nil {
				return err
			}
			return Serve(NetListener(l), l.Addr().String(), "")
		}
		return Client(func(bool) (Conn, error) {
			c, err := net.DialTimeout(network, args[2], 5*time.Second)
			if err != nil {
				return nil, err
			}
			return NetConn(c), nil
		}, "")
	}
	return fmt.Errorf("bench role: unknown transport %q", t)
}

// fabricConn sends a message as records of at most fabricRecord bytes,
// by DMA from dmaFrom bytes on. The receiver knows the message size and
// takes records until it is full; every record fits what is left.
type fabricConn struct{ c *fabric.Conn }

func (f fabricConn) Send(p []byte) error {
	if len(p) >= dmaFrom && f.c.DMA() {
		for len(p) > 0 {
			k := min(len(p), 4<<20)
			if err := f.c.SendDMA(nil, p[:k]); err != nil {
				return err
			}
			p = p[k:]
		}
		return nil
	}
	for len(p) > 0 {
		k := min(len(p), fabricRecord, f.c.MaxRecord())
		if err := f.c.Send(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

func (f fabricConn) Recv(p []byte) error {
	for len(p) > 0 {
		n, err := f.c.Recv(p)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("fabric: empty record in a message")
		}
		p = p[n:]
	}
	return nil
}

func (f fabricConn) Close() error { return f.c.Close() }

type fabricListener struct{ n *fabric.Node }

func (f fabricListener) Accept() (Conn, error) {
	c, err := f.n.Accept(context.Background())
	if err != nil {
		return nil, err
	}
	return fabricConn{c}, nil
}

func (f fabricListener) Close() error { return f.n.Close() }

// profileEnv, when set, makes every child write a CPU profile to
// $ULTCP_BENCH_CPUPROFILE-<transport>-<client|server>.pprof, for
// `go tool pprof` of the hot path.
const profileEnv = "ULTCP_BENCH_CPUPROFILE"

func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// scratchDir makes the per-pair directory: a fabric directory on tmpfs for
// fabric transports, a socket directory otherwise.
func scratchDir(t string) (string, error) {
	base := os.TempDir()
	if t == UlTCP || t == UlTCPZC || t == Fabric {
		base = "/dev/shm"
	}
	return os.MkdirTemp(base, "ultcp-bench-"+t+"-")
}
