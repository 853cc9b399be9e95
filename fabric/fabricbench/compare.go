package fabricbench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/floor"
)

// Options control one comparison run.
type Options struct {
	// Quick measures fewer sizes for less time each: under a minute in all.
	Quick bool
	// Pin pins the measuring threads of receiver and sender to CPUs 0 and 1.
	Pin bool
	// Progress, if set, is called before each measurement with the number
	// done so far, the number in all, and what comes next.
	Progress func(done, total int, what string)
}

// Sizes are the block (record) sizes of the streaming sweep.
func (o Options) Sizes() []int {
	if o.Quick {
		return []int{64, 4 << 10, 64 << 10, 1 << 20}
	}
	return []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}
}

func (o Options) budget() (time.Duration, int) {
	if o.Quick {
		return 250 * time.Millisecond, 3
	}
	return 500 * time.Millisecond, 3
}

// Measurement is one measured point of one subject.
type Measurement struct {
	Subject string
	Block   int `json:",omitempty"` // bytes per record; 0 for ping-pong

	// Ping-pong.
	HalfRTTMinNs    float64 `json:",omitempty"`
	HalfRTTMedianNs float64 `json:",omitempty"`

	// Streaming.
	GBps           float64 `json:",omitempty"`
	SenderNsPerB   float64 `json:",omitempty"`
	ReceiverNsPerB float64 `json:",omitempty"`
	Bytes          int64   `json:",omitempty"`
	ElapsedNs      int64   `json:",omitempty"`
}

// Check is one row of the fabric-versus-floor table: a fabric figure, the
// floor it is read against, their ratio, and the target from issue 10 where
// there is one.
type Check struct {
	Name      string
	Unit      string
	HasFabric bool // Fabric was measured
	HasFloor  bool // Floor was measured
	Fabric    float64
	Floor     float64
	FloorName string
	Ratio     float64 // Fabric / Floor
	Target    string  `json:",omitempty"` // e.g. "≤ 2×"; empty for information only
	Met       bool
	Missing   string `json:",omitempty"` // why a figure is absent
}

// Report is the outcome of Compare.
type Report struct {
	Start      time.Time
	Duration   time.Duration
	CPUs       int
	Pinned     bool
	Quick      bool
	LoadBefore string // /proc/loadavg when the run began
	LoadAfter  string
	// OtherCPU is the share of the machine's CPU time that other processes
	// used during the run (all CPUs busy minus this process and its
	// children, over wall time × CPUs): the measure of how quiet the run
	// was, which the load average, a minute-long moving average, is not.
	// Negative when it could not be read.
	OtherCPU     float64
	Measurements []Measurement
	Checks       []Check
}

// Compare measures every subject of this build and fills in the checks.
//
// It measures in rounds: each round starts every subject afresh (a new
// child process, new shared memory) and runs each of its points once, and
// each point keeps its best round. So a burst of load from another
// process, or an unlucky placement of one session's processes, spoils one
// round of a few points rather than every repetition of one subject, and
// the fabric and its floors are measured in interleaved time windows. The
// first round probes each point to size its runs.
func Compare(o Options) (*Report, error) {
	rep := &Report{Start: time.Now(), CPUs: runtime.NumCPU(), Pinned: o.Pin, Quick: o.Quick, LoadBefore: loadavg()}
	busy0, own0, statErr := machineBusy()
	cfg := floor.Config{Pin: o.Pin}
	budget, reps := o.budget()
	sizes := o.Sizes()
	subjects := Subjects()
	points := 0
	for _, s := range subjects {
		if s.StartLatency != nil {
			points++
		} else {
			points += len(sizes)
		}
	}
	done := 0
	progress := func(what string) {
		if o.Progress != nil {
			o.Progress(done, points*reps, what)
		}
		done++
	}
	type key struct {
		subject string
		block   int
	}
	bestStream := map[key]floor.Stream{}
	bestLatency := map[key]floor.Latency{}
	sizing := map[key]int64{} // bytes per stream run, round trips per latency batch
	for round := range reps {
		for _, s := range subjects {
			if s.StartLatency != nil {
				k := key{s.Name, 0}
				progress(fmt.Sprintf("round %d/%d: %s", round+1, reps, s.Name))
				p, err := s.StartLatency(cfg)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.Name, err)
				}
				if round == 0 {
					n, err := LatencyBatch(p, budget)
					if err != nil {
						p.Close()
						return nil, fmt.Errorf("%s: %w", s.Name, err)
					}
					sizing[k] = int64(n)
				}
				l, err := p.PingPong(latencyBatches, int(sizing[k]))
				cerr := p.Close()
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.Name, err)
				}
				if cerr != nil {
					return nil, fmt.Errorf("%s: closing: %w", s.Name, cerr)
				}
				bestLatency[k] = quicker(bestLatency[k], l)
				continue
			}
			st, err := s.StartStream(cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
			for _, size := range sizes {
				k := key{s.Name, size}
				progress(fmt.Sprintf("round %d/%d: %s %s", round+1, reps, s.Name, SizeName(size)))
				if round == 0 {
					if sizing[k], err = StreamTotal(st, size, budget); err != nil {
						st.Close()
						return nil, fmt.Errorf("%s at %s: %w", s.Name, SizeName(size), err)
					}
				}
				r, err := st.Stream(size, sizing[k])
				if err != nil {
					st.Close()
					return nil, fmt.Errorf("%s at %s: %w", s.Name, SizeName(size), err)
				}
				bestStream[k] = faster(bestStream[k], r)
			}
			if err := st.Close(); err != nil {
				return nil, fmt.Errorf("%s: closing: %w", s.Name, err)
			}
		}
	}
	for _, s := range subjects {
		if s.StartLatency != nil {
			l := bestLatency[key{s.Name, 0}]
			rep.Measurements = append(rep.Measurements, Measurement{Subject: s.Name, HalfRTTMinNs: l.MinNs, HalfRTTMedianNs: l.MedianNs})
			continue
		}
		for _, size := range sizes {
			r := bestStream[key{s.Name, size}]
			rep.Measurements = append(rep.Measurements, Measurement{
				Subject: s.Name, Block: size, GBps: r.GBps(),
				SenderNsPerB: r.SenderNsPerByte(), ReceiverNsPerB: r.ReceiverNsPerByte(),
				Bytes: r.Bytes, ElapsedNs: r.Elapsed.Nanoseconds(),
			})
		}
	}
	rep.Checks = checks(rep.Measurements)
	rep.Duration = time.Since(rep.Start)
	rep.LoadAfter = loadavg()
	rep.OtherCPU = -1
	if busy1, own1, err := machineBusy(); err == nil && statErr == nil {
		other := (busy1 - busy0) - (own1 - own0)
		rep.OtherCPU = max(0, other.Seconds()/(rep.Duration.Seconds()*float64(rep.CPUs)))
	}
	return rep, nil
}

// Find returns the measurement of subject at block (0 for ping-pong).
func (r *Report) Find(subject string, block int) (Measurement, bool) {
	return find(r.Measurements, subject, block)
}

func find(ms []Measurement, subject string, block int) (Measurement, bool) {
	for _, m := range ms {
		if m.Subject == subject && m.Block == block {
			return m, true
		}
	}
	return Measurement{}, false
}

// checks builds the table of issue 10's "Must show": each fabric figure
// next to its floor, with the target where the issue sets one.
func checks(ms []Measurement) []Check {
	const kib64, mib = 64 << 10, 1 << 20
	type spec struct {
		name, unit       string
		fabric, floorSub string
		block            int
		value            func(Measurement) float64
		target           string
		met              func(ratio float64) bool
	}
	halfRTT := func(m Measurement) float64 { return m.HalfRTTMedianNs }
	gbps := func(m Measurement) float64 { return m.GBps }
	senderCPU := func(m Measurement) float64 { return m.SenderNsPerB }
	receiverCPU := func(m Measurement) float64 { return m.ReceiverNsPerB }
	specs := []spec{
		{"half RTT, spinning, 8 B", "ns", FabricSpin, FloorSpin, 0, halfRTT, "≤ 2×", func(r float64) bool { return r <= 2 }},
		{"half RTT, futex-sleeping, 8 B", "ns", FabricSleep, FloorFutex, 0, halfRTT, "", nil},
		{"PIO bandwidth 64 KiB", "GB/s", FabricPIO, FloorRing, kib64, gbps, "", nil},
		{"PIO bandwidth 1 MiB", "GB/s", FabricPIO, FloorRing, mib, gbps, "≥ 70 %", func(r float64) bool { return r >= 0.70 }},
		{"DMA bandwidth 64 KiB", "GB/s", FabricDMA, FloorCMA, kib64, gbps, "≥ 80 %", func(r float64) bool { return r >= 0.80 }},
		{"DMA bandwidth 1 MiB", "GB/s", FabricDMA, FloorCMA, mib, gbps, "≥ 80 %", func(r float64) bool { return r >= 0.80 }},
		{"PIO sender CPU 64 KiB", "ns/B", FabricPIO, FloorRing, kib64, senderCPU, "", nil},
		{"PIO receiver CPU 64 KiB", "ns/B", FabricPIO, FloorRing, kib64, receiverCPU, "", nil},
		{"PIO sender CPU 1 MiB", "ns/B", FabricPIO, FloorRing, mib, senderCPU, "", nil},
		{"PIO receiver CPU 1 MiB", "ns/B", FabricPIO, FloorRing, mib, receiverCPU, "", nil},
		{"DMA sender CPU 64 KiB (floor spins)", "ns/B", FabricDMA, FloorCMAHand, kib64, senderCPU, "", nil},
		{"DMA receiver CPU 64 KiB", "ns/B", FabricDMA, FloorCMA, kib64, receiverCPU, "", nil},
		{"DMA sender CPU 1 MiB (floor spins)", "ns/B", FabricDMA, FloorCMAHand, mib, senderCPU, "", nil},
		{"DMA receiver CPU 1 MiB", "ns/B", FabricDMA, FloorCMA, mib, receiverCPU, "", nil},
	}
	var out []Check
	for _, s := range specs {
		c := Check{Name: s.name, Unit: s.unit, FloorName: s.floorSub, Target: s.target}
		f, okF := find(ms, s.fabric, s.block)
		fl, okFl := find(ms, s.floorSub, s.block)
		switch {
		case !okF:
			c.Missing = s.fabric + " not measured"
		case !okFl:
			c.Missing = s.floorSub + " not measured"
		}
		if okF {
			c.Fabric, c.HasFabric = s.value(f), true
		}
		if okFl {
			c.Floor, c.HasFloor = s.value(fl), true
		}
		if okF && okFl && c.Floor > 0 {
			c.Ratio = c.Fabric / c.Floor
			if s.met != nil {
				c.Met = s.met(c.Ratio)
			}
		}
		out = append(out, c)
	}
	// The last target compares the fabric with itself: a DMA sender must
	// not spin through a wait whose length it can predict from the size.
	c := Check{Name: "DMA vs PIO sender CPU 1 MiB", Unit: "ns/B", FloorName: FabricPIO, Target: "< 1/3"}
	d, okD := find(ms, FabricDMA, mib)
	p, okP := find(ms, FabricPIO, mib)
	if okD && okP && p.SenderNsPerB > 0 {
		c.Fabric, c.Floor = d.SenderNsPerB, p.SenderNsPerB
		c.HasFabric, c.HasFloor = true, true
		c.Ratio = c.Fabric / c.Floor
		c.Met = c.Ratio < 1.0/3
	} else {
		c.Missing = "fabric/dma or fabric/pio not measured"
	}
	return append(out, c)
}

// SizeName prints a block size the way the tables do: 64 B, 4 KiB, 1 MiB.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// machineBusy returns the CPU time all CPUs have spent not idle since
// boot (/proc/stat, in clock ticks) and the CPU time of this process and
// its waited-for children. Every child of Compare has been waited for by
// the time it reads the second sample.
func machineBusy() (busy, own time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("fabricbench: unexpected /proc/stat line %q", line)
	}
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait are busy. The kernel reports them in USER_HZ, 100 on Linux.
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("fabricbench: /proc/stat: %w", err)
		}
		ticks += n
	}
	var self, kids unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return 0, 0, err
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &kids); err != nil {
		return 0, 0, err
	}
	own = time.Duration(self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano())
	return time.Duration(ticks) * 10 * time.Millisecond, own, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
