package main

// ultcp gateway: joins a fabric as its gateway and forwards between the
// fabric and a TUN device it creates and configures in the network
// namespace it runs in. It refuses to run in the init network namespace
// (a TUN device and a route to the cluster subnet there would reach the
// machine's real network) unless --allow-root-netns is given.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/capture"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/gateway"
	"github.com/ultcp/ultcp/internal/netlink"
	"github.com/ultcp/ultcp/link/tun"
)

func init() {
	subcommands = append(subcommands, subcommand{
		name:    "gateway",
		summary: "join a fabric as its gateway and forward to a TUN device: ultcp gateway --fabric NAME --addr 10.77.0.1 --tun ultcp0",
		run:     runGateway,
		usage:   gatewayUsage,
	})
}

type gatewayOptions struct {
	fabric, fabricDir string
	addr, subnet, tun string
	mtu               int
	custody           string
	metrics           string
	capture           string
	impair            string
	softCsum          bool
	allowRootNetns    bool
	verbose           bool
	services          serviceFlags // --service (service.go)
	cpuProfile        string
	spin              time.Duration
}

func gatewayFlags(o *gatewayOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("ultcp gateway", flag.ContinueOnError)
	fs.StringVar(&o.fabric, "fabric", fabric.DefaultName, "fabric `name` (directory /dev/shm/ultcp/NAME)")
	fs.StringVar(&o.fabricDir, "fabric-dir", "", "fabric `directory` (overrides --fabric)")
	fs.StringVar(&o.addr, "addr", "10.77.0.1", "the gateway's own `address` on the cluster subnet")
	fs.StringVar(&o.subnet, "subnet", fabric.DefaultSubnet.String(), "the cluster `subnet`, routed through the TUN device")
	fs.StringVar(&o.tun, "tun", "ultcp0", "TUN device `name` to create")
	fs.IntVar(&o.mtu, "mtu", gateway.DefaultMTU, "MTU of the TUN device; SYNs' MSS is clamped to MTU-40")
	fs.StringVar(&o.custody, "custody", "0", "custody memory (gateway-assisted retransmission), e.g. 256MiB; 0 is off")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on `addr` (host:port)")
	fs.StringVar(&o.capture, "capture", "", "write a pcap of the device side to `FILE` and of the fabric side to FILE with .fabric before the extension")
	fs.StringVar(&o.impair, "impair", "", "impair the way out: delay=20ms,jitter=1ms,loss=0.01,reorder=0.1,dup=0.05,seed=1")
	fs.BoolVar(&o.softCsum, "soft-csum", false, "compute TCP checksums of single segments while copying instead of offloading them to the kernel")
	fs.BoolVar(&o.allowRootNetns, "allow-root-netns", false, "run even in the init network namespace (never in tests)")
	fs.BoolVar(&o.verbose, "v", false, "log flows as they close")
	fs.Var(&o.services, "service", "load-balance `VIP:PORT[=POLICY]` over the nodes listening on it (policy queue, leastconn, roundrobin, hash or sed; default queue); repeatable")
	fs.DurationVar(&o.spin, "spin", gateway.DefaultSpinBudget, "how long the event loop polls before it sleeps (negative: sleep at once)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the gateway to `FILE` (go tool pprof)")
	return fs
}

func gatewayUsage(w io.Writer) {
	var o gatewayOptions
	fs := gatewayFlags(&o)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func runGateway(args []string, stdout, stderr io.Writer) int {
	var o gatewayOptions
	fs := gatewayFlags(&o)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ultcp gateway: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "ultcp gateway: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "ultcp gateway: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := gatewayMain(ctx, o, log); err != nil {
		fmt.Fprintf(stderr, "ultcp gateway: %v\n", err)
		return 1
	}
	return 0
}

// errRootNetns is the refusal to run in the init network namespace.
var errRootNetns = errors.New("refusing to run in the init network namespace (a TUN device and a route to the cluster subnet would be on the machine's real network); run it in a namespace (ip netns exec NAME ultcp gateway ...) or pass --allow-root-netns")

// procNetInitIno is the inode number Linux gives the init network
// namespace since it numbers init namespaces statically (0xEFFFFFF9, just
// below the time namespace's 0xEFFFFFFA); dynamic numbers start at
// 0xF0000000, so no other namespace ever has it.
const procNetInitIno = 0xEFFFFFF9

// inInitNetns tells whether this process runs in the init network
// namespace. It needs positive evidence of the contrary: the namespace
// differs from pid 1's (when /proc/1 can be read; in some containers it
// cannot), or it is one that ip netns made (/run/netns/*). Anything else,
// in particular the init namespace's fixed inode number, counts as the
// init namespace.
func inInitNetns() (bool, error) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return false, fmt.Errorf("reading /proc/self/ns/net: %w", err)
	}
	if self.Ino == procNetInitIno {
		return true, nil
	}
	var init unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &init); err == nil {
		return self.Ino == init.Ino && self.Dev == init.Dev, nil
	}
	named, _ := filepath.Glob("/run/netns/*")
	for _, n := range named {
		var st unix.Stat_t
		if unix.Stat(n, &st) == nil && st.Ino == self.Ino && st.Dev == self.Dev {
			return false, nil
		}
	}
	return true, nil
}

func gatewayMain(ctx context.Context, o gatewayOptions, log *slog.Logger) error {
	addr, err := netip.ParseAddr(o.addr)
	if err != nil || !addr.Is4() {
		return fmt.Errorf("--addr %q is not an IPv4 address", o.addr)
	}
	subnet, err := netip.ParsePrefix(o.subnet)
	if err != nil || !subnet.Addr().Is4() || subnet.Masked() != subnet {
		return fmt.Errorf("--subnet %q is not an IPv4 prefix such as 10.77.0.0/16", o.subnet)
	}
	if !subnet.Contains(addr) {
		return fmt.Errorf("--addr %v is not in --subnet %v", addr, subnet)
	}
	custody, err := parseSize(o.custody)
	if err != nil {
		return fmt.Errorf("--custody: %w", err)
	}
	if !o.allowRootNetns {
		root, err := inInitNetns()
		if err != nil {
			return err
		}
		if root {
			return errRootNetns
		}
	}
	dev, err := tun.Open(tun.Config{Name: o.tun, MTU: o.mtu, Offload: true})
	if err != nil {
		return err
	}
	defer dev.Close() // also removes the device, its address and its route
	cfg := gateway.Config{
		Fabric: o.fabric, FabricDir: o.fabricDir, Addr: addr, Subnet: subnet, Device: dev, MTU: o.mtu,
		Custody: custody, Impair: o.impair, SoftChecksum: o.softCsum, SpinBudget: o.spin, Logger: log,
	}
	if o.capture != "" {
		ext := filepath.Ext(o.capture)
		fabricFile := strings.TrimSuffix(o.capture, ext) + ".fabric" + ext
		if cfg.Capture, err = capture.Create(o.capture); err != nil {
			return err
		}
		defer cfg.Capture.Close()
		if cfg.CaptureFabric, err = capture.Create(fabricFile); err != nil {
			return err
		}
		defer cfg.CaptureFabric.Close()
	}
	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if err := o.services.apply(g); err != nil {
		g.Close()
		return err
	}
	// The address is a /32: the route to the subnet is added explicitly,
	// and the gateway's namespace keeps no other cluster address local.
	if err := netlink.AddAddr(dev.Name(), netip.PrefixFrom(addr, 32)); err != nil {
		g.Close()
		return fmt.Errorf("configuring %s: %w", dev.Name(), err)
	}
	if err := netlink.LinkUp(dev.Name()); err != nil {
		g.Close()
		return fmt.Errorf("configuring %s: %w", dev.Name(), err)
	}
	if err := netlink.AddRoute(subnet, dev.Name()); err != nil {
		g.Close()
		return fmt.Errorf("routing %v through %s: %w", subnet, dev.Name(), err)
	}
	if o.metrics != "" {
		a, err := g.ServeMetrics(o.metrics)
		if err != nil {
			g.Close()
			return err
		}
		log.Info("gateway: metrics", "addr", "http://"+a.String()+"/metrics")
	}
	log.Info("gateway: forwarding", "fabric", o.fabric, "addr", addr, "subnet", subnet, "tun", dev.Name(), "mtu", o.mtu, "custody", custody)
	err = g.Run(ctx)
	s := g.Stats()
	log.Info("gateway: stopped", "out_packets", s.OutPackets.Load(), "in_packets", s.InPackets.Load(), "flows_opened", s.FlowsOpened.Load())
	return err
}
