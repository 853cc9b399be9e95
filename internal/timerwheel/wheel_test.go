package timerwheel

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

func newWheel(t testing.TB) *Wheel {
	t.Helper()
	w, err := New(ms, 0)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// collect returns a fire callback appending each fired entry's Owner (an
// int) and the list it appends to.
func collect() (func(*Entry), *[]int) {
	var got []int
	return func(e *Entry) { got = append(got, e.Owner.(int)) }, &got
}

func TestNewRejectsNonPositiveTick(t *testing.T) {
	for _, tick := range []time.Duration{0, -ms} {
		if w, err := New(tick, 0); err == nil || w != nil {
			t.Errorf("New(%v) = %v, %v; want nil and an error", tick, w, err)
		}
	}
}

func TestEntryFiresAtItsDeadlineNotBefore(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	e := &Entry{Owner: 1}
	w.Schedule(e, 10*ms+500*time.Microsecond) // rounds up to tick 11
	for _, now := range []time.Duration{ms, 10 * ms, 10*ms + 999*time.Microsecond} {
		if w.Advance(now, fire); len(*got) != 0 {
			t.Fatalf("fired at %v, before its deadline 10.5ms", now)
		}
	}
	if n := w.Advance(11*ms, fire); n != 1 || len(*got) != 1 {
		t.Fatalf("Advance(11ms) fired %d, want the entry due at 10.5ms", n)
	}
	if e.Scheduled() || w.Len() != 0 {
		t.Fatalf("after firing: Scheduled %v, Len %d; want false, 0", e.Scheduled(), w.Len())
	}
}

func TestEntryOnATickFiresAtThatTick(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	w.Schedule(&Entry{Owner: 1}, 200*ms)
	w.Advance(200*ms-1, fire)
	if len(*got) != 0 {
		t.Fatal("fired 1ns before its deadline")
	}
	w.Advance(200*ms, fire)
	if len(*got) != 1 {
		t.Fatal("did not fire at exactly its deadline")
	}
}

func TestEntriesFireInDeadlineOrderAcrossLevels(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	deadlines := []time.Duration{
		5 * ms, 63 * ms, 64 * ms, 65 * ms, // level 0 and 1 boundary
		4095 * ms, 4096 * ms, 4097 * ms, // level 1 and 2
		200 * ms, 40 * ms, time.Minute, time.Hour, 2 * time.Hour, 30 * 24 * time.Hour,
	}
	var entries []Entry
	entries = make([]Entry, len(deadlines))
	for i, d := range deadlines {
		entries[i].Owner = i
		w.Schedule(&entries[i], d)
	}
	if n := w.Advance(31*24*time.Hour, fire); n != len(deadlines) {
		t.Fatalf("Advance past every deadline fired %d of %d", n, len(deadlines))
	}
	for i := 1; i < len(*got); i++ {
		if deadlines[(*got)[i-1]] > deadlines[(*got)[i]] {
			t.Fatalf("fired %v before %v", deadlines[(*got)[i-1]], deadlines[(*got)[i]])
		}
	}
}

func TestCancelledEntryNeverFires(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	a, b := &Entry{Owner: 1}, &Entry{Owner: 2}
	w.Schedule(a, 100*ms)
	w.Schedule(b, 100*ms)
	w.Cancel(a)
	w.Cancel(a) // twice is harmless
	w.Cancel(&Entry{})
	if w.Len() != 1 || a.Scheduled() {
		t.Fatalf("after Cancel: Len %d, Scheduled %v; want 1, false", w.Len(), a.Scheduled())
	}
	w.Advance(time.Second, fire)
	if !slices.Equal(*got, []int{2}) {
		t.Fatalf("fired %v, want only [2]", *got)
	}
}

func TestScheduleMovesAScheduledEntry(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	e := &Entry{Owner: 1}
	w.Schedule(e, 100*ms)
	w.Schedule(e, 300*ms) // later
	w.Advance(299*ms, fire)
	if len(*got) != 0 {
		t.Fatal("fired at its old deadline after being moved later")
	}
	w.Schedule(e, 350*ms)
	w.Schedule(e, 310*ms) // earlier
	w.Advance(310*ms, fire)
	if len(*got) != 1 || w.Len() != 0 {
		t.Fatalf("fired %d times, Len %d; want once and 0", len(*got), w.Len())
	}
}

func TestScheduleMovesEntryBetweenWheels(t *testing.T) {
	a, b := newWheel(t), newWheel(t)
	fire, got := collect()
	e := &Entry{Owner: 1}
	a.Schedule(e, 10*ms)
	b.Schedule(e, 10*ms)
	if a.Len() != 0 || b.Len() != 1 {
		t.Fatalf("after moving: a.Len %d, b.Len %d; want 0, 1", a.Len(), b.Len())
	}
	a.Advance(time.Second, fire)
	b.Advance(time.Second, fire)
	if !slices.Equal(*got, []int{1}) {
		t.Fatalf("fired %v, want [1] once, from b", *got)
	}
}

func TestPastDeadlineFiresAtNextTick(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	w.Advance(50*ms, fire)
	w.Schedule(&Entry{Owner: 1}, 10*ms) // already past
	w.Advance(50*ms+999*time.Microsecond, fire)
	if len(*got) != 0 {
		t.Fatal("past deadline fired within the current tick")
	}
	w.Advance(51*ms, fire)
	if len(*got) != 1 {
		t.Fatal("past deadline did not fire at the next tick")
	}
}

func TestTimeGoingBackwardsChangesNothing(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	w.Advance(100*ms, fire)
	w.Schedule(&Entry{Owner: 1}, 120*ms)
	w.Advance(10*ms, fire)
	if len(*got) != 0 {
		t.Fatal("fired when time went backwards")
	}
	if d, ok := w.NextDeadline(); !ok || d > 120*ms || d <= 100*ms {
		t.Fatalf("NextDeadline after a backwards Advance = %v, %v; want in (100ms, 120ms]", d, ok)
	}
	w.Advance(120*ms, fire)
	if len(*got) != 1 {
		t.Fatal("did not fire at 120ms")
	}
}

func TestNextDeadlineEmpty(t *testing.T) {
	w := newWheel(t)
	if d, ok := w.NextDeadline(); ok {
		t.Fatalf("empty wheel: NextDeadline = %v, true; want false", d)
	}
}

func TestNextDeadlineExactAtFinestLevel(t *testing.T) {
	w := newWheel(t)
	w.Schedule(&Entry{}, 40*ms)
	if d, ok := w.NextDeadline(); !ok || d != 40*ms {
		t.Fatalf("NextDeadline = %v, %v; want 40ms", d, ok)
	}
}

// TestSleeperFollowingNextDeadline plays the progress engine: sleep until
// NextDeadline, Advance, repeat. The entry must fire exactly at its
// deadline, with no wake-up after it and at most one per level before it.
func TestSleeperFollowingNextDeadline(t *testing.T) {
	for _, deadline := range []time.Duration{3 * ms, 200 * ms, 75 * time.Second, 2 * time.Hour, 3 * 365 * 24 * time.Hour} {
		w := newWheel(t)
		w.Schedule(&Entry{}, deadline)
		var firedAt time.Duration
		wakeups := 0
		for wakeups < 20 {
			d, ok := w.NextDeadline()
			if !ok {
				break
			}
			if d > deadline {
				t.Fatalf("deadline %v: NextDeadline %v is after it", deadline, d)
			}
			wakeups++
			w.Advance(d, func(*Entry) { firedAt = d })
		}
		// Beyond the 2^36-tick span the entry waits at the top level and
		// cascades once more, so allow a few extra wake-ups there.
		if firedAt != deadline || wakeups > numLevels+3 {
			t.Fatalf("deadline %v: fired at %v after %d wake-ups", deadline, firedAt, wakeups)
		}
	}
}

func TestEntryBeyondWheelSpanFiresOnTime(t *testing.T) {
	w := newWheel(t)
	fire, got := collect()
	span := time.Duration(1<<(numLevels*slotBits)) * ms // about 2.2 years
	for i, d := range []time.Duration{span - ms, span, span + 5*ms, 3 * span} {
		w.Schedule(&Entry{Owner: i}, d)
	}
	w.Advance(span-2*ms, fire)
	if len(*got) != 0 {
		t.Fatalf("fired %v before any deadline", *got)
	}
	w.Advance(span, fire)
	if !slices.Equal(*got, []int{0, 1}) {
		t.Fatalf("at the span fired %v, want [0 1]", *got)
	}
	w.Advance(3*span-ms, fire)
	if !slices.Equal(*got, []int{0, 1, 2}) {
		t.Fatalf("just before 3 spans fired %v, want [0 1 2]", *got)
	}
	w.Advance(3*span, fire)
	if !slices.Equal(*got, []int{0, 1, 2, 3}) {
		t.Fatalf("at 3 spans fired %v, want [0 1 2 3]", *got)
	}
}

func TestFarFutureDeadlineDoesNotOverflow(t *testing.T) {
	w, _ := New(ms, -time.Hour)
	e := &Entry{}
	w.Schedule(e, time.Duration(1<<63-1))
	if w.Advance(time.Duration(1<<62), func(*Entry) { t.Fatal("fired a deadline at the end of time") }); !e.Scheduled() {
		t.Fatal("far entry lost")
	}
}

func TestFireMayCancelAnotherDueEntry(t *testing.T) {
	w := newWheel(t)
	a, b := &Entry{Owner: 1}, &Entry{Owner: 2}
	w.Schedule(a, 10*ms)
	w.Schedule(b, 10*ms)
	var got []int
	w.Advance(10*ms, func(e *Entry) {
		got = append(got, e.Owner.(int))
		if e == a {
			w.Cancel(b)
		} else {
			w.Cancel(a)
		}
	})
	if len(got) != 1 || w.Len() != 0 {
		t.Fatalf("fired %v, Len %d; want exactly one of the two and 0", got, w.Len())
	}
}

// TestFireReschedulingIntoThePastTerminates: a callback that keeps
// rescheduling its entry in the past gets it back once per tick, so one
// Advance over 100 ticks fires it 100 times and returns.
func TestFireReschedulingIntoThePastTerminates(t *testing.T) {
	w := newWheel(t)
	e := &Entry{}
	w.Schedule(e, ms)
	n := w.Advance(100*ms, func(e *Entry) { w.Schedule(e, 0) })
	if n != 100 || !e.Scheduled() {
		t.Fatalf("fired %d times (Scheduled %v), want 100 and still scheduled", n, e.Scheduled())
	}
}

func TestAdvanceFromFireDoesNothing(t *testing.T) {
	w := newWheel(t)
	w.Schedule(&Entry{}, ms)
	w.Schedule(&Entry{}, 2*ms)
	inner := -1
	n := w.Advance(ms, func(*Entry) { inner = w.Advance(time.Hour, func(*Entry) {}) })
	if n != 1 || inner != 0 || w.Len() != 1 {
		t.Fatalf("outer fired %d, inner %d, Len %d; want 1, 0, 1", n, inner, w.Len())
	}
}

func TestArmMovesOnlyEarlier(t *testing.T) {
	w := newWheel(t)
	e := &Entry{}
	w.Arm(e, 300*ms)
	if !e.Scheduled() || e.Deadline() != 300*ms {
		t.Fatalf("Arm on an idle entry: Scheduled %v Deadline %v; want true 300ms", e.Scheduled(), e.Deadline())
	}
	w.Arm(e, 500*ms)
	if e.Deadline() != 300*ms {
		t.Fatalf("Arm later moved the entry to %v; want it left at 300ms", e.Deadline())
	}
	w.Arm(e, 40*ms)
	if e.Deadline() != 40*ms {
		t.Fatalf("Arm earlier left the entry at %v; want 40ms", e.Deadline())
	}
}

// conn is a stand-in for a TCP connection using the lazy re-arm pattern:
// its retransmission deadline moves later on every ACK without touching
// the wheel.
type conn struct {
	rto      time.Duration
	deadline time.Duration // true earliest deadline; 0 = none
	entry    Entry
	ops      int // wheel operations
	expired  []time.Duration
}

func (c *conn) arm(w *Wheel) {
	if c.deadline != 0 && (!c.entry.Scheduled() || c.deadline < c.entry.Deadline()) {
		c.ops++
	}
	w.Arm(&c.entry, c.deadline)
}

func (c *conn) fired(w *Wheel, now time.Duration) {
	if c.deadline == 0 {
		return // nothing to do: the timer dies
	}
	if now < c.deadline { // early: the deadline moved later since
		c.ops++
		w.Schedule(&c.entry, c.deadline)
		return
	}
	c.expired = append(c.expired, now)
	c.deadline = 0
}

func TestLazyRearmCostsNoWheelOperationPerAck(t *testing.T) {
	w := newWheel(t)
	c := &conn{rto: 200 * ms}
	c.entry.Owner = c
	now := time.Duration(0)
	fire := func(e *Entry) { e.Owner.(*conn).fired(w, now) }
	// Send at 0, then an ACK every 10 ms for one second, each pushing
	// the RTO deadline to ack time + 200 ms.
	c.deadline = c.rto
	c.arm(w)
	for now = 10 * ms; now <= time.Second; now += 10 * ms {
		w.Advance(now, fire)
		c.deadline = now + c.rto
		c.arm(w)
	}
	// 100 ACKs; the entry fired early about once per 200 ms.
	if c.ops > 7 {
		t.Fatalf("%d wheel operations for 100 ACKs, want at most 7", c.ops)
	}
	// Then the ACKs stop: the timer must expire exactly 200 ms after the last.
	last := now - 10*ms
	for ; now <= 2*time.Second; now += ms {
		w.Advance(now, fire)
	}
	if len(c.expired) != 1 || c.expired[0] != last+c.rto {
		t.Fatalf("RTO expired at %v, want once at %v", c.expired, last+c.rto)
	}
	if w.Len() != 0 {
		t.Fatalf("Len %d after the timer died, want 0", w.Len())
	}
}

// TestMatchesReferenceModel runs random schedules, cancels, re-arms and
// advances (fixed seed) against the contract written out plainly: an entry
// scheduled for deadline d after the clock reached tick T fires at tick
// max(ceil(d), T+1), in the first Advance whose time reaches that tick.
func TestMatchesReferenceModel(t *testing.T) {
	runModel(t, 1987, 20000)
}

// FuzzMatchesReferenceModel runs the same model from fuzzed seeds.
func FuzzMatchesReferenceModel(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(6298))
	f.Fuzz(func(t *testing.T, seed uint64) {
		runModel(t, seed, 2000)
	})
}

func runModel(t *testing.T, seed uint64, steps int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	w := newWheel(t)
	const n = 2000
	entries := make([]Entry, n)
	due := make([]int64, n) // expected tick; -1 = not scheduled
	for i := range entries {
		entries[i].Owner = i
		due[i] = -1
	}
	var clock int64 // ticks processed
	ceil := func(d time.Duration) int64 { return int64((d + ms - 1) / ms) }
	for step := range steps {
		i := r.IntN(n)
		switch op := r.IntN(10); {
		case op < 5:
			// Deadlines from the past to hours ahead, spread over levels.
			span := []time.Duration{10 * ms, 500 * ms, 30 * time.Second, 5 * time.Hour}[r.IntN(4)]
			d := time.Duration(clock)*ms + time.Duration(r.Int64N(int64(span))) - 5*ms
			w.Schedule(&entries[i], d)
			due[i] = max(ceil(d), clock+1)
		case op < 7:
			w.Cancel(&entries[i])
			due[i] = -1
		default:
			adv := []int64{0, 1, 3, 64, 700, 5000, 200000}[r.IntN(7)]
			now := time.Duration(clock+adv)*ms + time.Duration(r.Int64N(int64(ms)))
			var got []int
			lastTick := int64(-1)
			w.Advance(now, func(e *Entry) {
				k := e.Owner.(int)
				if due[k] < lastTick {
					t.Fatalf("step %d: entry %d due at tick %d fired after one due at %d", step, k, due[k], lastTick)
				}
				lastTick = due[k]
				got = append(got, k)
			})
			clock += adv
			var want []int
			for k, d := range due {
				if d >= 0 && d <= clock {
					want = append(want, k)
					due[k] = -1
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Advance to tick %d fired %v, want %v", step, clock, got, want)
			}
		}
		scheduled := 0
		for _, d := range due {
			if d >= 0 {
				scheduled++
			}
		}
		if w.Len() != scheduled {
			t.Fatalf("step %d: Len %d, want %d", step, w.Len(), scheduled)
		}
	}
}

// benchEntries schedules n entries at deadlines spread over 0..spread.
func benchEntries(w *Wheel, n int, spread time.Duration) []Entry {
	r := rand.New(rand.NewPCG(1, 1))
	es := make([]Entry, n)
	for i := range es {
		es[i].Owner = i
		w.Schedule(&es[i], time.Duration(r.Int64N(int64(spread))))
	}
	return es
}

// BenchmarkScheduleCancel100k: with 100 000 timers on the wheel, cancel one
// and schedule it again at a new deadline (one op = both).
func BenchmarkScheduleCancel100k(b *testing.B) {
	w := newWheel(b)
	es := benchEntries(w, 100_000, 10*time.Second)
	r := rand.New(rand.NewPCG(2, 2))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := &es[i%len(es)]
		w.Cancel(e)
		w.Schedule(e, time.Duration(r.Int64N(int64(10*time.Second))))
		i++
	}
}

// BenchmarkArmLater100k is the per-ACK cost of lazy re-arming: Arm with a
// later deadline, which leaves the wheel alone.
func BenchmarkArmLater100k(b *testing.B) {
	w := newWheel(b)
	es := benchEntries(w, 100_000, 10*time.Second)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.Arm(&es[i%len(es)], 20*time.Second)
		i++
	}
}

// BenchmarkAdvance100k: 100 000 timers spread over 10 s; each op advances
// the clock by 1 ms, firing about 10 entries which reschedule themselves
// 10 s later (a steady state of expiring and re-armed timers).
func BenchmarkAdvance100k(b *testing.B) {
	w := newWheel(b)
	benchEntries(w, 100_000, 10*time.Second)
	var now time.Duration
	fire := func(e *Entry) { w.Schedule(e, now+10*time.Second) }
	b.ReportAllocs()
	fired := 0
	for b.Loop() {
		now += ms
		fired += w.Advance(now, fire)
	}
	b.ReportMetric(float64(fired)/float64(b.N), "fired/op")
}
