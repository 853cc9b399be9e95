package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Link is one direction of the simulated path: a bottleneck that
// serialises packets at Rate through a drop-tail queue, then a wire that
// delays them by Delay and may lose, corrupt, duplicate or reorder them.
// The zero value is an ideal link: infinitely fast, no delay, no queue
// limit, no faults.
type Link struct {
	// Rate is the bottleneck's rate in bits per second, counting whole
	// IPv4 packets (headers included); 0 means infinitely fast.
	Rate int64
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// QueueBytes and QueuePackets bound the drop-tail queue in front of
	// the bottleneck (the packet being serialised counts); a packet that
	// would exceed either limit is dropped. Zero means no limit.
	QueueBytes, QueuePackets int
	// ECNMark, when positive, marks an ECN-capable packet CE (RFC 3168)
	// if the queue it joins already holds more than ECNMark bytes: a
	// step-marking AQM (DCTCP's K). Packets that are not ECN-capable are
	// only subject to drop-tail.
	ECNMark int

	// Loss is the probability that a packet is lost on the wire,
	// independently of every other.
	Loss float64
	// Burst adds correlated loss (Gilbert-Elliott); the zero value adds
	// none.
	Burst GilbertElliott
	// Reorder is the probability that a packet is held back by an extra
	// delay drawn uniformly from (0, ReorderDelay], so that packets
	// behind it overtake it. ReorderDelay defaults to 10 ms.
	Reorder      float64
	ReorderDelay time.Duration
	// Dup is the probability that a packet arrives twice.
	Dup float64
	// Corrupt is the probability that one byte of the packet is changed
	// on the wire. The receiver's checksum verification must catch it.
	// Exactly one byte is changed: the 16-bit ones'-complement checksum
	// of RFC 1071 detects every such error, while a random multi-byte
	// error escapes it with probability about 2^-16; the simulator tests
	// that the checksum is verified, not TCP's known blind spot.
	Corrupt float64
}

// GilbertElliott is the two-state burst-loss model (Gilbert 1960,
// Elliott 1963): the wire is Good or Bad, moves from Good to Bad with
// probability PGoodBad and back with PBadGood before each packet, and
// loses a packet with probability LossGood or LossBad in each state.
// The mean burst length is 1/PBadGood packets.
type GilbertElliott struct {
	PGoodBad, PBadGood float64
	LossGood, LossBad  float64
}

// DefaultReorderDelay is the largest extra delay of a reordered packet
// when Link.ReorderDelay is zero.
const DefaultReorderDelay = 10 * time.Millisecond

func checkProb(name string, p float64) error {
	if !(p >= 0 && p <= 1) { // also rejects NaN
		return fmt.Errorf("sim: %s probability %v is not in [0, 1]", name, p)
	}
	return nil
}

// Validate reports the first unusable setting.
func (l *Link) Validate() error {
	if l.Rate < 0 {
		return errors.New("sim: negative rate")
	}
	if l.Delay < 0 || l.ReorderDelay < 0 {
		return errors.New("sim: negative delay")
	}
	if l.QueueBytes < 0 || l.QueuePackets < 0 || l.ECNMark < 0 {
		return errors.New("sim: negative queue limit")
	}
	for _, p := range []struct {
		n string
		v float64
	}{{"loss", l.Loss}, {"reorder", l.Reorder}, {"duplication", l.Dup}, {"corruption", l.Corrupt},
		{"burst Good→Bad", l.Burst.PGoodBad}, {"burst Bad→Good", l.Burst.PBadGood},
		{"burst loss in Good", l.Burst.LossGood}, {"burst loss in Bad", l.Burst.LossBad}} {
		if err := checkProb(p.n, p.v); err != nil {
			return err
		}
	}
	if l.Burst.PGoodBad > 0 && l.Burst.PBadGood == 0 {
		return errors.New("sim: burst loss never leaves the Bad state (PBadGood is 0)")
	}
	return nil
}

// LinkStats counts what one direction did to its packets. Every packet
// offered is either dropped by the queue, lost on the wire, or delivered
// (possibly corrupted, reordered or twice).
type LinkStats struct {
	Packets    int64 `json:"packets"`     // packets offered to the link
	Bytes      int64 `json:"bytes"`       // their bytes, IPv4 headers included
	QueueDrops int64 `json:"queue_drops"` // dropped by the full drop-tail queue
	Lost       int64 `json:"lost"`        // lost on the wire (random or burst)
	BurstLost  int64 `json:"burst_lost"`  // of Lost, those the burst model lost
	Corrupted  int64 `json:"corrupted"`   // delivered with a byte changed
	ECNMarked  int64 `json:"ecn_marked"`  // ECN-capable packets marked CE by the queue
	Duplicated int64 `json:"duplicated"`  // delivered twice
	Reordered  int64 `json:"reordered"`   // held back so that later packets overtook them
	MaxQueue   int   `json:"max_queue"`   // the most bytes ever queued
}

// Fate is what the link decided for one packet.
type Fate struct {
	Dropped bool          // dropped: nothing arrives
	Arrive  time.Duration // when it arrives (unless Dropped)
	Corrupt int           // index of the byte to corrupt, or -1
	XOR     byte          // the nonzero value XORed into it
	Dup     bool          // a second, intact copy arrives too
	DupAt   time.Duration
	CE      bool // the queue marked it Congestion Experienced
}

// Intact reports whether the packet, or a copy of it, arrives unchanged.
func (f *Fate) Intact() bool { return !f.Dropped && (f.Corrupt < 0 || f.Dup) }

// queued is one packet in the bottleneck: it leaves at done.
type queued struct {
	done time.Duration
	size int
}

// linkState is a Link in operation.
type linkState struct {
	cfg   Link
	rng   *rand.Rand
	bad   bool          // Gilbert-Elliott state
	free  time.Duration // when the bottleneck finishes what it holds
	q     []queued      // packets not yet fully serialised, oldest first
	qHead int
	qB    int // bytes in q
	stats LinkStats
}

func newLinkState(cfg Link, rng *rand.Rand) *linkState {
	if cfg.ReorderDelay == 0 {
		cfg.ReorderDelay = DefaultReorderDelay
	}
	return &linkState{cfg: cfg, rng: rng}
}

// serialisation is the time the bottleneck takes for size bytes.
func (l *linkState) serialisation(size int) time.Duration {
	if l.cfg.Rate == 0 {
		return 0
	}
	return time.Duration(int64(size) * 8 * int64(time.Second) / l.cfg.Rate)
}

// drain forgets the packets fully serialised by now.
func (l *linkState) drain(now time.Duration) {
	for l.qHead < len(l.q) && l.q[l.qHead].done <= now {
		l.qB -= l.q[l.qHead].size
		l.qHead++
	}
	if l.qHead == len(l.q) {
		l.q, l.qHead = l.q[:0], 0
	} else if l.qHead > 1024 && l.qHead*2 > len(l.q) {
		n := copy(l.q, l.q[l.qHead:])
		l.q, l.qHead = l.q[:n], 0
	}
}

// send offers a packet of size bytes at now and returns its fate. The
// random draws happen in a fixed order for every packet, so a run is a
// function of the seed alone.
func (l *linkState) send(now time.Duration, size int, ect bool) Fate {
	l.stats.Packets++
	l.stats.Bytes += int64(size)
	f := Fate{Corrupt: -1}
	l.drain(now)
	if c := &l.cfg; (c.QueueBytes > 0 && l.qB+size > c.QueueBytes) ||
		(c.QueuePackets > 0 && len(l.q)-l.qHead+1 > c.QueuePackets) {
		l.stats.QueueDrops++
		f.Dropped = true
		return f
	}
	if ect && l.cfg.ECNMark > 0 && l.qB > l.cfg.ECNMark {
		f.CE = true
		l.stats.ECNMarked++
	}
	start := max(now, l.free)
	l.free = start + l.serialisation(size)
	l.q = append(l.q, queued{done: l.free, size: size})
	l.qB += size
	l.stats.MaxQueue = max(l.stats.MaxQueue, l.qB)
	f.Arrive = l.free + l.cfg.Delay

	// The wire, after the bottleneck: a packet lost here used the
	// link's capacity, as on a lossy radio hop.
	r := l.rng
	lost := false
	if g := &l.cfg.Burst; g.PGoodBad > 0 || g.LossGood > 0 {
		if l.bad {
			l.bad = r.Float64() >= g.PBadGood
		} else {
			l.bad = r.Float64() < g.PGoodBad
		}
		p := g.LossGood
		if l.bad {
			p = g.LossBad
		}
		if r.Float64() < p {
			lost = true
			l.stats.BurstLost++
		}
	}
	if l.cfg.Loss > 0 && r.Float64() < l.cfg.Loss {
		lost = true
	}
	if lost {
		l.stats.Lost++
		f.Dropped = true
		return f
	}
	if l.cfg.Corrupt > 0 && r.Float64() < l.cfg.Corrupt {
		l.stats.Corrupted++
		f.Corrupt = r.IntN(size)
		f.XOR = byte(1 + r.IntN(255))
	}
	if l.cfg.Dup > 0 && r.Float64() < l.cfg.Dup {
		l.stats.Duplicated++
		f.Dup = true
		f.DupAt = f.Arrive
	}
	if l.cfg.Reorder > 0 && r.Float64() < l.cfg.Reorder {
		l.stats.Reordered++
		f.Arrive += 1 + time.Duration(r.Int64N(int64(l.cfg.ReorderDelay)))
	}
	return f
}
