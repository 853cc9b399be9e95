package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

// Options control one run.
type Options struct {
	// Quick measures fewer sizes for less time each: under a minute.
	Quick bool
	// Transports to run, by short name; empty: all of them.
	Transports []string
	// Pin is PinNone (default), PinSame or PinSplit.
	Pin string
	// GVisorSrc is the directory of the bench/gvisor module; empty: found
	// next to this package's source, or from $ULTCP_GVISOR_SRC.
	GVisorSrc string
	// Progress, if set, is called before each measurement.
	Progress func(done, total int, what string)
	// Sizes, if set, replaces the sweep's message sizes (tests).
	Sizes []int
	// PointBudget and CRRBudget, if set, replace the default time bounds.
	PointBudget, CRRBudget time.Duration
}

// Sizes are the message sizes of the sweep: powers of two from 1 byte to
// 8 MiB and, like NetPIPE's default perturbation, 3 bytes either side of
// each from 8 bytes on (below that the neighbours would overlap). Quick
// takes every other power of two and no perturbations.
func (o Options) sizes() []int {
	if o.Sizes != nil {
		return o.Sizes
	}
	var s []int
	step := 2
	if o.Quick {
		step = 4
	}
	for p := 1; p <= 8<<20; p *= step {
		if !o.Quick && p >= 8 {
			s = append(s, p-3, p, p+3)
		} else {
			s = append(s, p)
		}
	}
	return s
}

// budgets: every point runs at least minPoint and at most point; the
// connection-rate test runs crr.
func (o Options) budgets() (minPoint, point, crr time.Duration) {
	minPoint, point, crr = 150*time.Millisecond, 400*time.Millisecond, time.Second
	if o.Quick {
		minPoint, point, crr = 30*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond
	}
	if o.PointBudget > 0 {
		minPoint, point = o.PointBudget/4, o.PointBudget
	}
	if o.CRRBudget > 0 {
		crr = o.CRRBudget
	}
	return minPoint, point, crr
}

// warmUp is how long each pair ping-pongs before the sweep.
const warmUp = 200 * time.Millisecond

// pair is one transport's two running processes.
type pair struct {
	name           string
	server, client child
	dir            string
	link           string
}

// child is a process speaking JSON lines: proc.Child for the roles of
// this binary, extChild for the gVisor helper.
type child interface {
	Stdin() io.WriteCloser
	Recv(v any, timeout time.Duration) error
	Wait(timeout time.Duration) error
	Kill()
}

func (p *pair) command(c Command, reply any) error {
	b, _ := json.Marshal(c)
	if _, err := p.client.Stdin().Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s client: %w", p.name, err)
	}
	return p.client.Recv(reply, c.Budget+30*time.Second)
}

// close stops the client (which ends the ping-pong connection), then the
// server, and removes the pair's directory, whatever failed before.
func (p *pair) close() error {
	var errs []error
	for _, c := range []child{p.client, p.server} {
		if c == nil {
			continue
		}
		c.Stdin().Close()
		if err := c.Wait(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if p.dir != "" {
		errs = append(errs, os.RemoveAll(p.dir))
	}
	return errors.Join(errs...)
}

// startPair starts the server, waits for its address, starts the client
// and waits until its ping-pong connection is up.
func startPair(name, pin string, o Options) (*pair, error) {
	if name == GVisor {
		return startGVisor(pin, o)
	}
	dir, err := scratchDir(name)
	if err != nil {
		return nil, err
	}
	p := &pair{name: name, dir: dir}
	fail := func(err error) (*pair, error) {
		_ = p.close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	srv, err := proc.Start(roleServer, name, dir, strconv.Itoa(cpuFor(pin, 0)))
	if err != nil {
		return fail(err)
	}
	p.server = srv
	var r Ready
	if err := srv.Recv(&r, 20*time.Second); err != nil {
		return fail(err)
	}
	cl, err := proc.Start(roleClient, name, dir, strconv.Itoa(cpuFor(pin, 1)), r.Addr)
	if err != nil {
		return fail(err)
	}
	p.client = cl
	p.link = r.Link
	if err := cl.Recv(&r, 20*time.Second); err != nil {
		return fail(err)
	}
	if r.Error != "" {
		return fail(errors.New(r.Error))
	}
	return p, nil
}

// Run measures every transport of o and returns the report. A transport
// that cannot start (gVisor not buildable, NPtcp not installed) is left
// out with a note saying why; the others still run.
func Run(o Options) (*Report, error) {
	if o.Pin == "" {
		o.Pin = PinNone
	}
	if o.Pin != PinNone && o.Pin != PinSame && o.Pin != PinSplit {
		return nil, fmt.Errorf("--pin %q: want same, split or none", o.Pin)
	}
	names := o.Transports
	if len(names) == 0 {
		for _, t := range Transports {
			names = append(names, t.Name)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(Transports, func(t TransportInfo) bool { return t.Name == n }) {
			return nil, fmt.Errorf("unknown transport %q (transports: %s)", n, transportNames())
		}
	}
	start := time.Now()
	all0, own0, busyOK := busyNow()
	rep := &Report{Machine: machine(o.Pin, o.Quick)}
	progress := o.Progress
	if progress == nil {
		progress = func(int, int, string) {}
	}
	minPoint, pointBudget, crrBudget := o.budgets()
	sizes := o.sizes()

	var pairs []*pair
	defer func() {
		for _, p := range pairs {
			_ = p.close()
		}
	}()
	wantNP := false
	for _, n := range names {
		if n == NetPIPE {
			wantNP = true
			continue
		}
		progress(0, 1, "starting "+n)
		p, err := startPair(n, o.Pin, o)
		if err != nil {
			rep.Machine.Notes = append(rep.Machine.Notes, fmt.Sprintf("%s skipped: %v", n, err))
			continue
		}
		if p.link != "" && n == GVisor {
			rep.Machine.GVisorLink = p.link
		}
		pairs = append(pairs, p)
	}
	// Warm up every pair before measuring: a new process starts on its
	// parent's CPU, and until the scheduler's load balancer moves one of
	// two spinning partners away (up to a second here) they share one CPU
	// and a 1-byte round trip costs tens of microseconds instead of a
	// fraction of one. The same warm-up faults in the transports' memory.
	for _, p := range pairs {
		progress(0, 1, "warming up "+p.name)
		var pt Point
		_ = p.command(Command{Op: "pp", Size: 1, MinTime: warmUp, Budget: warmUp}, &pt)
	}
	total := len(sizes)*len(pairs) + len(pairs)
	done := 0
	failed := map[string]bool{}
	// Interleave: every transport at one size before the next size, with
	// the starting transport rotating so none is always first after a
	// pause.
	for i, size := range sizes {
		for j := range pairs {
			p := pairs[(i+j)%len(pairs)]
			if failed[p.name] {
				done++
				continue
			}
			progress(done, total, fmt.Sprintf("%-10s %s", p.name, SizeName(size)))
			done++
			var pt Point
			err := p.command(Command{Op: "pp", Size: size, MinTime: minPoint, Budget: pointBudget}, &pt)
			if err == nil && pt.Error != "" {
				err = errors.New(pt.Error)
			}
			if err != nil {
				failed[p.name] = true
				rep.Machine.Notes = append(rep.Machine.Notes, fmt.Sprintf("%s failed at %d bytes: %v", p.name, size, err))
				continue
			}
			rep.Runs = append(rep.Runs, runOf(p.name, pt))
		}
	}
	for j := range pairs {
		p := pairs[(len(sizes)+j)%len(pairs)]
		progress(done, total, fmt.Sprintf("%-10s connection rate", p.name))
		done++
		if failed[p.name] {
			continue
		}
		var r CRRResult
		err := p.command(Command{Op: "crr", Budget: crrBudget}, &r)
		if err == nil && r.Error != "" {
			err = fmt.Errorf("after %d connections: %s", r.Conns, r.Error)
		}
		if err != nil {
			rep.Machine.Notes = append(rep.Machine.Notes, fmt.Sprintf("%s connection rate failed: %v", p.name, err))
			continue
		}
		rep.CRR = append(rep.CRR, CRR{Transport: p.name, ConnsPerS: r.MedianRate(),
			MeanConnsPerS: float64(r.Conns) / r.Elapsed.Seconds(), Batches: len(r.Rates)})
	}
	for _, p := range pairs {
		if err := p.close(); err != nil {
			rep.Machine.Notes = append(rep.Machine.Notes, fmt.Sprintf("%s did not stop cleanly: %v", p.name, err))
		}
	}
	pairs = nil
	if wantNP {
		progress(done, total+1, "netpipe   NPtcp sweep")
		runs, err := runNetPIPE(o)
		if err != nil {
			rep.Machine.Notes = append(rep.Machine.Notes, fmt.Sprintf("netpipe skipped: %v", err))
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	sortRuns(rep, names)
	rep.Machine.LoadAfter = loadavg()
	rep.Machine.Seconds = time.Since(start).Seconds()
	if all1, own1, ok := busyNow(); ok && busyOK {
		others := (all1 - all0) - (own1 - own0)
		capacity := time.Since(start) * time.Duration(runtime.NumCPU())
		rep.Machine.OthersBusy = max(0, float64(others)/float64(capacity))
	}
	return rep, nil
}

func runOf(name string, pt Point) RunResult {
	cpu := pt.CPUPerRT.Nanoseconds()
	return RunResult{
		Transport:  name,
		Bytes:      pt.Size,
		HalfMin:    pt.HalfMin.Nanoseconds(),
		HalfMedian: pt.HalfMedian.Nanoseconds(),
		Mbps:       mbps(pt.Size, pt.HalfMedian),
		CPUPerRT:   &cpu,
	}
}

// mbps is NetPIPE's throughput: the message's bits over the one-way time.
func mbps(size int, half time.Duration) float64 {
	if half <= 0 {
		return 0
	}
	return float64(size) * 8 / half.Seconds() / 1e6
}

func sortRuns(r *Report, order []string) {
	idx := func(t string) int { return slices.Index(order, t) }
	slices.SortStableFunc(r.Runs, func(a, b RunResult) int {
		if d := idx(a.Transport) - idx(b.Transport); d != 0 {
			return d
		}
		return a.Bytes - b.Bytes
	})
	slices.SortStableFunc(r.CRR, func(a, b CRR) int { return idx(a.Transport) - idx(b.Transport) })
}

func transportNames() string {
	var n []string
	for _, t := range Transports {
		n = append(n, t.Name)
	}
	return strings.Join(n, ",")
}

// extChild is an external program speaking the roles' protocol: JSON
// lines on stdout, commands on stdin, stderr passed through.
type extChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte
	once  sync.Once
	done  chan struct{}
	err   error
}

func startExt(cmd *exec.Cmd) (*extChild, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &extChild{cmd: cmd, stdin: stdin, lines: make(chan []byte, 16), done: make(chan struct{})}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				close(c.lines)
				return
			}
			c.lines <- line
		}
	}()
	return c, nil
}

func (c *extChild) Stdin() io.WriteCloser { return c.stdin }
func (c *extChild) Kill()                 { _ = c.cmd.Process.Kill() }

func (c *extChild) Recv(v any, timeout time.Duration) error {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("%s exited", c.cmd.Path)
		}
		return json.Unmarshal(line, v)
	case <-time.After(timeout):
		c.Kill()
		return fmt.Errorf("%s: no answer in %v", c.cmd.Path, timeout)
	}
}

func (c *extChild) Wait(timeout time.Duration) error {
	c.once.Do(func() {
		go func() { c.err = c.cmd.Wait(); close(c.done) }()
	})
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.Kill()
		<-c.done
		return fmt.Errorf("%s did not exit in %v", c.cmd.Path, timeout)
	}
}

// machine describes where and how the run happens.
func machine(pin string, quick bool) Machine {
	m := Machine{
		Date:       time.Now().UTC().Format(time.RFC3339),
		CPUs:       runtime.NumCPU(),
		Go:         runtime.Version(),
		Pin:        pin,
		Quick:      quick,
		LoadBefore: loadavg(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// busyNow returns the CPU time all CPUs have spent not idle since boot
// (/proc/stat, USER_HZ ticks of 10 ms) and the CPU time of this process
// and its waited-for children, so that a run can say how much of the
// machine others took while it measured.
func busyNow() (all, own time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		ticks += n
	}
	var self, kids unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &self) != nil || unix.Getrusage(unix.RUSAGE_CHILDREN, &kids) != nil {
		return 0, 0, false
	}
	own = time.Duration(self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano())
	return time.Duration(ticks) * 10 * time.Millisecond, own, true
}
