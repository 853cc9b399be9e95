package main

// ultcp nc: netcat over ultcp. One connection: bytes from stdin go to the
// peer, bytes from the peer go to stdout. End of stdin half-closes the
// connection (CloseWrite, a FIN), and the command ends when both directions
// are done, or at the first error (exit status 1, the error on stderr).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/capture"
	"github.com/ultcp/ultcp/fabric"
)

func init() {
	subcommands = append(subcommands, subcommand{
		name:    "nc",
		summary: "netcat over ultcp: ultcp nc -l PORT, or ultcp nc HOST PORT",
		run:     func(args []string, stdout, stderr io.Writer) int { return runNC(args, os.Stdin, stdout, stderr) },
		usage:   ncUsage,
	})
}

// Default node addresses: a listener takes the first address of the
// subnet, so that "ultcp nc 10.77.0.1 PORT" finds it; a dialler takes the
// first free one from ncFirstClient on.
var (
	ncListenAddr  = netip.MustParseAddr("10.77.0.1")
	ncFirstClient = netip.MustParseAddr("10.77.0.100")
)

const (
	ncClientAddrTries = 100
	ncBufSize         = 1 << 20 // stdin reads; ≥ the default DMA threshold so auto can use DMA
	ncCloseWait       = 5 * time.Second
)

type ncOptions struct {
	listen    bool
	fabric    string
	fabricDir string
	addr      string
	zerocopy  string
	capture   string
	timeout   time.Duration
	verbose   bool
}

func ncFlags(o *ncOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("nc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.listen, "l", false, "listen on PORT and serve one connection")
	fs.StringVar(&o.fabric, "fabric", fabric.DefaultName, "fabric name (directory "+fabric.DefaultRoot+"/NAME)")
	fs.StringVar(&o.fabricDir, "fabric-dir", "", "fabric directory (overrides --fabric)")
	fs.StringVar(&o.addr, "addr", "", "this node's address (default 10.77.0.1 with -l, else the first free from 10.77.0.100)")
	fs.StringVar(&o.zerocopy, "zerocopy", "auto", "auto: DMA for writes ≥ 256 KiB; on: DMA for every write; off: PIO only")
	fs.StringVar(&o.capture, "capture", "", "write every packet of the connection to this pcap file")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up connecting after this long")
	fs.BoolVar(&o.verbose, "v", false, "say what happens on stderr, and the connection's counters at the end")
	return fs
}

func ncUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ultcp nc [flags] -l PORT | ultcp nc [flags] HOST PORT")
	fs := ncFlags(&ncOptions{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// parseInterleaved parses flags that may come before, between or after
// the positional arguments (as netcat users type them).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runNC(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o ncOptions
	fs := ncFlags(&o)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp nc: %v\n", err)
		ncUsage(stderr)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ultcp nc: "+format+"\n", a...)
		return 1
	}
	var host string
	var port int
	switch {
	case o.listen && len(pos) == 1:
		port, err = parsePort(pos[0])
	case !o.listen && len(pos) == 2:
		host = pos[0]
		if _, perr := netip.ParseAddr(host); perr != nil {
			fmt.Fprintf(stderr, "ultcp nc: HOST must be an IPv4 address on the fabric, not %q\n", host)
			return 2
		}
		port, err = parsePort(pos[1])
	default:
		ncUsage(stderr)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "ultcp nc: %v\n", err)
		return 2
	}
	cfg := ultcp.Config{Fabric: o.fabric, FabricDir: o.fabricDir}
	switch o.zerocopy {
	case "auto":
	case "on":
		cfg.DMAThreshold = 1
	case "off":
		cfg.DMAThreshold = -1
	default:
		fmt.Fprintf(stderr, "ultcp nc: --zerocopy must be auto, on or off, not %q\n", o.zerocopy)
		return 2
	}
	var cw *capture.Writer
	if o.capture != "" {
		if cw, err = capture.Create(o.capture); err != nil {
			return fail("%v", err)
		}
		cfg.Capture = cw.Capture
	}
	s, err := ncStack(cfg, o)
	if err != nil {
		if cw != nil {
			cw.Close()
		}
		return fail("%v", err)
	}
	code := ncSession(s, o, host, port, stdin, stdout, stderr)
	s.Close()
	if cw != nil {
		if err := cw.Close(); err != nil {
			fmt.Fprintf(stderr, "ultcp nc: capture: %v\n", err)
			if code == 0 {
				code = 1
			}
		} else if o.verbose {
			fmt.Fprintf(stderr, "ultcp nc: captured %d packets into %s\n", cw.Packets(), o.capture)
		}
	}
	return code
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port must be a number from 1 to 65535, not %q", s)
	}
	return p, nil
}

// ncStack joins the fabric at --addr, or at the default address: the
// listener's, or the first free client address.
func ncStack(cfg ultcp.Config, o ncOptions) (*ultcp.Stack, error) {
	if o.addr != "" {
		a, err := netip.ParseAddr(o.addr)
		if err != nil {
			return nil, fmt.Errorf("--addr: %v", err)
		}
		cfg.Addr = a
		return ultcp.NewStack(cfg)
	}
	if o.listen {
		cfg.Addr = ncListenAddr
		return ultcp.NewStack(cfg)
	}
	a := ncFirstClient
	for range ncClientAddrTries {
		cfg.Addr = a
		s, err := ultcp.NewStack(cfg)
		if !errors.Is(err, syscall.EADDRINUSE) {
			return s, err
		}
		a = a.Next()
	}
	return nil, fmt.Errorf("no free address from %v to %v; choose one with --addr", ncFirstClient, a.Prev())
}

// ncSession opens the connection and copies both ways until both are done.
func ncSession(s *ultcp.Stack, o ncOptions, host string, port int, stdin io.Reader, stdout, stderr io.Writer) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()

	var c *ultcp.Conn
	if o.listen {
		l, err := s.ListenTCP("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			fmt.Fprintf(stderr, "ultcp nc: %v\n", err)
			return 1
		}
		if o.verbose {
			fmt.Fprintf(stderr, "ultcp nc: listening on %v\n", l.Addr())
		}
		stop := context.AfterFunc(ctx, func() { l.Close() })
		c, err = acceptTCP(l)
		stop()
		l.Close()
		if err != nil {
			if ctx.Err() != nil {
				return 130
			}
			fmt.Fprintf(stderr, "ultcp nc: %v\n", err)
			return 1
		}
	} else {
		d := ultcp.Dialer{Stack: s, Timeout: o.timeout}
		var err error
		c, err = d.DialTCP(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			if ctx.Err() != nil {
				return 130
			}
			fmt.Fprintf(stderr, "ultcp nc: %v\n", err)
			return 1
		}
	}
	defer c.Close()
	if o.verbose {
		fmt.Fprintf(stderr, "ultcp nc: connected %v -> %v\n", c.LocalAddr(), c.RemoteAddr())
	}

	type result struct {
		dir string
		n   int64
		err error
	}
	done := make(chan result, 2)
	var blocked time.Duration // time the sender spent inside Write
	go func() {
		n, err := copyToConn(c, stdin, &blocked)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- result{"send", n, err}
	}()
	go func() {
		// WriteTo hands stdout views of the ring: one copy on the way.
		n, err := c.WriteTo(stdout)
		done <- result{"receive", n, err}
	}()
	var sent, received int64
	for range 2 {
		select {
		case r := <-done:
			if r.err != nil {
				fmt.Fprintf(stderr, "ultcp nc: %s: %v\n", r.dir, r.err)
				return 1
			}
			if r.dir == "send" {
				sent = r.n
			} else {
				received = r.n
			}
		case <-ctx.Done():
			fmt.Fprintln(stderr, "ultcp nc: interrupted")
			return 130
		}
	}
	c.Close()
	// The kernel would linger until the peer acknowledged our FIN; the
	// stack resets what is left when it closes, so wait for that here.
	for end := time.Now().Add(ncCloseWait); time.Now().Before(end); {
		st := c.Info().State
		if st == "TIME-WAIT" || st == "CLOSED" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if o.verbose {
		st := s.Stats()
		fmt.Fprintf(stderr, "ultcp nc: sent %d bytes, received %d; segments out %d, in %d; DMA records %d\n",
			sent, received, st.SegsOut, st.SegsIn, st.DMARecords)
		// For the custody measurement (issue 7): how long Write blocked,
		// and the most the engine held for retransmission.
		i := c.Info()
		fmt.Fprintf(stderr, "ultcp nc: write blocked %v; retained peak %d bytes; retransmits %d; custody %v\n",
			blocked, i.RetainedPeak, i.Stats.Retransmits, i.Custody)
	}
	return 0
}

func acceptTCP(l *ultcp.Listener) (*ultcp.Conn, error) {
	c, err := l.Accept()
	if err != nil {
		return nil, err
	}
	return c.(*ultcp.Conn), nil
}

// copyToConn copies r to c in reads of up to ncBufSize bytes, each one
// Write (so a large read can go by DMA), adding the time spent in Write to
// *blocked. A pipe on stdin is enlarged to the buffer's size so that a
// fast producer fills whole reads.
func copyToConn(c *ultcp.Conn, r io.Reader, blocked *time.Duration) (int64, error) {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, ncBufSize) // best effort: the limit is /proc/sys/fs/pipe-max-size
		}
	}
	buf := make([]byte, ncBufSize)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			t0 := time.Now()
			_, werr := c.Write(buf[:n])
			*blocked += time.Since(t0)
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("reading stdin: %w", err)
		}
	}
}
