// Package fabricbench measures the fabric next to its floors, with the same
// code for both: ring ping-pong half round trip (spinning and sleeping) and
// streaming bandwidth with the CPU time per byte of sender and receiver, for
// PIO and DMA, beside a bare cache-line ping-pong, a bare two-process ring
// copy and a bare process_vm_readv loop (package internal/floor).
//
// Every subject, fabric or floor, is driven through the same two
// interfaces, Streamer and PingPonger, so `go test -bench` here and
// `ultcp bench` (which calls Compare) measure exactly the same thing. The
// receiving side is always the calling process and the sending side a
// child process of the same binary (internal/proc), so a program using this
// package must call proc.RunChild first in main or TestMain.
//
// It must never assert timing: targets are reported as met or missed, not
// enforced, and nothing here changes the fabric's behaviour (a subject uses
// the fabric's public API with the settings a user could choose).
package fabricbench

import (
	"fmt"
	"time"

	"github.com/ultcp/ultcp/internal/floor"
)

// Streamer moves bytes from a child process (sender) to this process
// (receiver) in blocks (records) of a given size.
type Streamer interface {
	// Stream moves total bytes in blocks of block bytes and reports the
	// elapsed time and both sides' CPU time.
	Stream(block int, total int64) (floor.Stream, error)
	Close() error
}

// PingPonger bounces one small record between this process and a child.
type PingPonger interface {
	// PingPong does batches × perBatch round trips and reports the half
	// round trip, minimum and median over batches.
	PingPong(batches, perBatch int) (floor.Latency, error)
	Close() error
}

// Subject is one thing that can be measured: a floor or a fabric mode.
type Subject struct {
	Name string // "floor/ring-copy", "fabric/pio", ...
	// Exactly one of these is set.
	StartStream  func(cfg floor.Config) (Streamer, error)
	StartLatency func(cfg floor.Config) (PingPonger, error)
}

// Names of the subjects, as they appear in benchmark names, tables and JSON.
const (
	FloorSpin    = "floor/cacheline-pingpong"
	FloorFutex   = "floor/futex-pingpong"
	FloorRing    = "floor/ring-copy"
	FloorCMA     = "floor/process_vm_readv"
	FloorCMAHand = "floor/process_vm_readv+handshake"
	FabricSpin   = "fabric/pingpong-spin"
	FabricSleep  = "fabric/pingpong-futex"
	FabricPIO    = "fabric/pio"
	FabricDMA    = "fabric/dma"
)

// Subjects lists every subject this build can measure: the floors always,
// the fabric's modes once the fabric exists.
func Subjects() []Subject {
	s := []Subject{
		{Name: FloorSpin, StartLatency: func(cfg floor.Config) (PingPonger, error) { return startFloorPingPong(cfg, false) }},
		{Name: FloorFutex, StartLatency: func(cfg floor.Config) (PingPonger, error) { return startFloorPingPong(cfg, true) }},
		{Name: FloorRing, StartStream: startFloorRing},
		{Name: FloorCMA, StartStream: func(cfg floor.Config) (Streamer, error) { return startFloorCMA(cfg, false) }},
		{Name: FloorCMAHand, StartStream: func(cfg floor.Config) (Streamer, error) { return startFloorCMA(cfg, true) }},
	}
	return append(s, fabricSubjects()...)
}

// Lookup finds a subject by name.
func Lookup(name string) (Subject, bool) {
	for _, s := range Subjects() {
		if s.Name == name {
			return s, true
		}
	}
	return Subject{}, false
}

// The floors behind the two interfaces.

type floorPingPong struct {
	p     *floor.PingPong
	futex bool
}

func startFloorPingPong(cfg floor.Config, futex bool) (PingPonger, error) {
	p, err := floor.StartPingPong(cfg)
	if err != nil {
		return nil, err
	}
	return &floorPingPong{p: p, futex: futex}, nil
}

func (f *floorPingPong) PingPong(batches, perBatch int) (floor.Latency, error) {
	return f.p.Run(batches, perBatch, f.futex)
}

func (f *floorPingPong) Close() error { return f.p.Close() }

type floorRing struct{ r *floor.Ring }

func startFloorRing(cfg floor.Config) (Streamer, error) {
	r, err := floor.StartRing(cfg)
	if err != nil {
		return nil, err
	}
	return floorRing{r}, nil
}

func (f floorRing) Stream(block int, total int64) (floor.Stream, error) {
	return f.r.Run(block, total, false)
}

func (f floorRing) Close() error { return f.r.Close() }

type floorCMA struct {
	c         *floor.CMA
	handshake bool
}

func startFloorCMA(cfg floor.Config, handshake bool) (Streamer, error) {
	c, err := floor.StartCMA(cfg)
	if err != nil {
		return nil, err
	}
	return &floorCMA{c: c, handshake: handshake}, nil
}

func (f *floorCMA) Stream(block int, total int64) (floor.Stream, error) {
	return f.c.Run(block, total, f.handshake, false)
}

func (f *floorCMA) Close() error { return f.c.Close() }

// MeasureStream streams blocks of block bytes for about budget, reps
// times, and returns the fastest run. A short probe first sizes the runs
// (StreamTotal), so a slow subject (process_vm_readv at 64 B) and a fast
// one (a 1 MiB ring copy) both take about budget.
func MeasureStream(s Streamer, block int, budget time.Duration, reps int) (floor.Stream, error) {
	total, err := StreamTotal(s, block, budget)
	if err != nil {
		return floor.Stream{}, err
	}
	var best floor.Stream
	for range max(reps, 1) {
		r, err := s.Stream(block, total)
		if err != nil {
			return floor.Stream{}, err
		}
		best = faster(best, r)
	}
	return best, nil
}

// StreamTotal probes s with a short run (16 blocks, at least 8 MiB) and
// returns how many bytes, in whole blocks, take about budget at the rate
// seen.
func StreamTotal(s Streamer, block int, budget time.Duration) (int64, error) {
	probe := int64(block) * 16
	if probe < 8<<20 {
		probe = (8 << 20) / int64(block) * int64(block)
	}
	p, err := s.Stream(block, probe)
	if err != nil {
		return 0, err
	}
	rate := float64(p.Bytes) / p.Elapsed.Seconds()
	blocks := int64(rate*budget.Seconds()) / int64(block)
	return max(blocks, 16) * int64(block), nil
}

// faster is the run with the higher bandwidth.
func faster(a, b floor.Stream) floor.Stream {
	if b.GBps() > a.GBps() {
		return b
	}
	return a
}

// latencyBatches is how many batches a latency run splits its round
// trips into; the median over 50 batches is stable, and the minimum shows
// the undisturbed figure on a shared machine.
const latencyBatches = 50

// MeasureLatency does round trips for about budget, reps times, and
// returns the run with the lowest median. A probe sizes the batches
// (LatencyBatch), so spinning (~100 ns) and sleeping (~50 µs) both take
// about budget.
func MeasureLatency(p PingPonger, budget time.Duration, reps int) (floor.Latency, error) {
	perBatch, err := LatencyBatch(p, budget)
	if err != nil {
		return floor.Latency{}, err
	}
	var best floor.Latency
	for range max(reps, 1) {
		l, err := p.PingPong(latencyBatches, perBatch)
		if err != nil {
			return floor.Latency{}, err
		}
		best = quicker(best, l)
	}
	return best, nil
}

// LatencyBatch probes p with 100 round trips and returns how many round
// trips per batch make 50 batches take about budget.
func LatencyBatch(p PingPonger, budget time.Duration) (int, error) {
	probe, err := p.PingPong(1, 100)
	if err != nil {
		return 0, err
	}
	rtt := 2 * probe.MedianNs
	if rtt <= 0 {
		return 0, fmt.Errorf("fabricbench: probe measured a round trip of %.1f ns", rtt)
	}
	perBatch := int(float64(budget.Nanoseconds()) / latencyBatches / rtt)
	return min(max(perBatch, 10), 1_000_000), nil
}

// quicker is the run with the lower median; a zero Latency loses.
func quicker(a, b floor.Latency) floor.Latency {
	if a.Batches == 0 || b.MedianNs < a.MedianNs {
		return b
	}
	return a
}
