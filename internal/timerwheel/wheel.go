// Package timerwheel is the hierarchical timing wheel that holds every TCP
// timer of one ultcp stack (DESIGN.md: "one timer wheel per stack; a
// connection holds at most one entry"). It is sans-I/O: it reads no clock
// and starts no goroutine. The caller passes the time to Advance, which
// fires what is due, and asks NextDeadline when to call it next, so a
// progress engine can sleep exactly until then and tests drive it with a
// fake clock. It must never read the time, block, or allocate per timer.
//
// # Why a hierarchical wheel
//
// A stack may hold tens of thousands of connections, each with a
// retransmission, delayed-ACK, persist, keepalive or TIME-WAIT deadline.
// A heap costs O(log n) per change; a single wheel of fine slots needs
// either a huge array or many rounds for long timeouts. A hierarchy of
// wheels (Varghese and Lauck, "Hashed and hierarchical timing wheels",
// SOSP 1987, scheme 7) gives O(1) schedule and cancel with a small fixed
// array: level 0 has 64 slots of one tick, level 1 has 64 slots of 64
// ticks, and so on for 6 levels. A timer sits at the coarsest level whose
// slot still tells it apart from the present; when time reaches that slot
// the wheel moves ("cascades") its timers to finer levels, so each timer
// is touched at most once per level and fires at its own tick exactly.
// 64-bit occupancy masks find the next non-empty slot of a level with one
// instruction, so NextDeadline and Advance skip empty time in O(levels),
// not O(ticks): an idle stack costs nothing.
//
// # Resolution
//
// The tick is chosen at New; DefaultTick is 1 ms, which is 0.5% of Linux's
// 200 ms minimum RTO and far below RFC 6298 §4's "G <= 100 ms", and fine
// enough for a 40 ms delayed ACK. Six levels of 64 slots then span 2^36
// ticks (about 2.2 years at 1 ms); a later deadline waits at the top level
// and is cascaded again, so any deadline is accepted. A timer never fires
// before its deadline and fires within one tick after it, provided Advance
// is called by then.
//
// # Intrusive entries and lazy re-arming
//
// An Entry is a field of its owner (a connection), linked into its slot by
// pointers inside the Entry, so scheduling allocates nothing and cancelling
// is an O(1) unlink. Owner lets the fire callback find the owner.
//
// A TCP sender pushes its retransmission deadline later on every ACK.
// Moving a wheel entry each time would cost a wheel operation per ACK;
// instead the owner keeps its true earliest deadline in its own state and
// calls Arm, which touches the wheel only when the new deadline is earlier
// than the entry's. A later deadline is a no-op: the entry fires early, at
// the old deadline, and the owner, seeing that nothing is due yet,
// schedules the entry at its true deadline. So the entry only ever moves
// later when it fires early, at most once per timeout period rather than
// once per ACK, and a timer with nothing left to do (its deadline cleared)
// is cancelled or simply not re-armed when it fires.
package timerwheel

import (
	"errors"
	"math"
	"math/bits"
	"time"
)

// DefaultTick is the resolution a stack's wheel should use unless it has a
// reason not to (see the package doc).
const DefaultTick = time.Millisecond

const (
	slotBits  = 6
	numSlots  = 1 << slotBits // slots per level
	slotMask  = numSlots - 1
	numLevels = 6
	topLevel  = numLevels - 1
)

// notScheduled is an Entry's level when it is in no slot.
const notScheduled = -1

// Entry is one timer. Embed it in (or keep it as a field of) its owner;
// the zero value is an unscheduled entry. An Entry is on at most one wheel
// at a time; it must not be copied while scheduled.
type Entry struct {
	next, prev *Entry
	w          *Wheel
	when       time.Duration // the deadline the owner asked for
	tick       int64         // the tick it fires at, ≥ its deadline
	level      int8          // a level, or notScheduled
	slot       uint8

	// Owner is for the caller: typically a pointer to the struct holding
	// this Entry, so that the fire callback can find it. The wheel never
	// reads it.
	Owner any
}

// Scheduled reports whether e is on a wheel (including while Advance is
// handling its slot).
func (e *Entry) Scheduled() bool { return e.w != nil }

// Deadline is the deadline e was last scheduled for; meaningful only while
// e is scheduled.
func (e *Entry) Deadline() time.Duration { return e.when }

// list is a doubly linked list of entries through their next/prev fields.
type list struct{ head *Entry }

func (l *list) push(e *Entry) {
	e.prev = nil
	e.next = l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
}

func (l *list) remove(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.next, e.prev = nil, nil
}

type level struct {
	occupied uint64 // bit s set ⇔ slots[s] is non-empty
	slots    [numSlots]list
}

// Wheel is a hierarchical timing wheel. It is not safe for concurrent use:
// one stack serialises its calls (the progress engine and the goroutines
// doing protocol work share it under the stack's lock).
type Wheel struct {
	tick   time.Duration
	origin time.Duration // the time of tick 0
	// elapsed is the last tick Advance has processed: every slot that
	// starts at or before it has been handled, and every scheduled entry
	// fires at a later tick.
	elapsed   int64
	levels    [numLevels]level
	n         int
	advancing bool
}

// New returns an empty wheel with resolution tick whose clock starts at
// now (any monotonic time.Duration since the caller's epoch). It returns
// an error if tick is not positive.
func New(tick, now time.Duration) (*Wheel, error) {
	if tick <= 0 {
		return nil, errors.New("timerwheel: tick must be positive")
	}
	return &Wheel{tick: tick, origin: now}, nil
}

// Tick returns the wheel's resolution.
func (w *Wheel) Tick() time.Duration { return w.tick }

// Len returns the number of scheduled entries.
func (w *Wheel) Len() int { return w.n }

// ticksSince converts d to ticks since the origin, rounding up (ceil) or
// down, saturating instead of overflowing.
func (w *Wheel) ticksSince(d time.Duration, ceil bool) int64 {
	if d <= w.origin {
		return 0
	}
	x := d - w.origin
	if x < 0 { // overflowed: d is far in the future
		return math.MaxInt64 / 2
	}
	q := int64(x / w.tick)
	if ceil && x%w.tick != 0 {
		q++
	}
	return min(q, math.MaxInt64/2)
}

// Schedule puts e on the wheel to fire at deadline when, moving it if it
// is already scheduled (on this wheel or another). A deadline at or before
// the wheel's current tick fires at the next tick. O(1), no allocation.
func (w *Wheel) Schedule(e *Entry, when time.Duration) {
	if e.w != nil {
		e.w.unlink(e)
	}
	e.when = when
	e.tick = max(w.ticksSince(when, true), w.elapsed+1)
	e.w = w
	w.n++
	w.insert(e)
}

// Arm makes sure e fires no later than when: it schedules e if e is not
// scheduled or its deadline is after when, and otherwise does nothing. This
// is the call an owner makes whenever its earliest deadline may have
// changed (see "lazy re-arming" in the package doc); a later deadline costs
// no wheel operation.
func (w *Wheel) Arm(e *Entry, when time.Duration) {
	if e.w == w && e.when <= when {
		return
	}
	w.Schedule(e, when)
}

// Cancel takes e off its wheel, if it is on one. Cancelling an entry that
// is not scheduled does nothing. O(1).
func (w *Wheel) Cancel(e *Entry) {
	if e.w != nil {
		e.w.unlink(e)
	}
}

// unlink removes e from whichever list holds it.
func (w *Wheel) unlink(e *Entry) {
	if e.level != notScheduled {
		lv := &w.levels[e.level]
		l := &lv.slots[e.slot]
		l.remove(e)
		if l.head == nil {
			lv.occupied &^= 1 << e.slot
		}
	}
	e.level = notScheduled
	e.w = nil
	w.n--
}

// insert links e (tick > elapsed) into the slot that tells its tick apart
// from elapsed at the coarsest level: the level of the highest 6-bit group
// in which the two differ. Every entry at level L then lies in a later
// level-L slot than elapsed, within the current level-(L+1) slot, so
// lower levels always expire first.
func (w *Wheel) insert(e *Entry) {
	t := e.tick
	masked := uint64(w.elapsed^t) | slotMask
	lv := (63 - bits.LeadingZeros64(masked)) / slotBits
	var s int
	if lv < topLevel {
		s = int(t>>(lv*slotBits)) & slotMask
	} else {
		// Top level: the slot is chosen by distance, at most 63 slots
		// ahead, so a deadline beyond the wheel's span waits in the
		// farthest slot and is cascaded again when that slot expires,
		// rather than aliasing into a nearer one.
		lv = topLevel
		shift := topLevel * slotBits
		rel := min((t>>shift)-(w.elapsed>>shift), slotMask)
		s = int((w.elapsed>>shift)+rel) & slotMask
	}
	e.level = int8(lv)
	e.slot = uint8(s)
	w.levels[lv].slots[s].push(e)
	w.levels[lv].occupied |= 1 << s
}

// nextExpiration returns the earliest tick at which a non-empty slot
// starts, with its level and slot; ok is false when the wheel is empty.
func (w *Wheel) nextExpiration() (lv, slot int, at int64, ok bool) {
	for l := range numLevels {
		occ := w.levels[l].occupied
		if occ == 0 {
			continue
		}
		shift := l * slotBits
		now := int(w.elapsed>>shift) & slotMask
		rel := bits.TrailingZeros64(bits.RotateLeft64(occ, -now))
		t := ((w.elapsed >> shift) + int64(rel)) << shift
		if !ok || t < at {
			lv, slot, at, ok = l, (now+rel)&slotMask, t, true
		}
	}
	return lv, slot, at, ok
}

// NextDeadline returns when Advance next has work to do, and false when
// the wheel is empty. That is the tick of the earliest entry when it is in
// the finest level, and otherwise the start of the coarser slot holding it,
// where Advance moves it to a finer level (without firing anything); so it
// is never later than the earliest deadline rounded up to a tick, and a
// sleeper that wakes at it wakes at most once per level more than it
// strictly must. O(levels).
func (w *Wheel) NextDeadline() (time.Duration, bool) {
	_, _, at, ok := w.nextExpiration()
	if !ok {
		return 0, false
	}
	return w.origin + time.Duration(at)*w.tick, true
}

// Advance moves the wheel's clock to now and calls fire for every entry
// whose deadline is at or before now, in order of their ticks (entries of
// one tick in no particular order). An entry is off the wheel when fire is
// called, so fire may schedule it again (the lazy re-arm) or schedule and
// cancel any other entry, including ones due in the same call. A time
// before the last Advance changes nothing. Advance must not be called from
// fire (such a call does nothing). It returns the number of entries fired.
func (w *Wheel) Advance(now time.Duration, fire func(*Entry)) int {
	if w.advancing {
		return 0
	}
	w.advancing = true
	defer func() { w.advancing = false }()

	target := max(w.ticksSince(now, false), w.elapsed)
	fired := 0
	for {
		lv, s, at, ok := w.nextExpiration()
		if !ok || at > target {
			break
		}
		// Every slot starting before at has been handled, so the clock
		// can move to at. Entries due now fire; the others (from a
		// coarser level) go to a finer one relative to the new time.
		w.elapsed = at
		// Nothing scheduled from here on can land in this slot (a new
		// entry's tick is after at, and a coarser slot only takes ticks
		// beyond its own), so the slot can be drained in place: an entry
		// still in it stays cancellable by the fire callback.
		l := &w.levels[lv]
		sl := &l.slots[s]
		for sl.head != nil {
			e := sl.head
			sl.remove(e)
			if e.tick <= at {
				e.level = notScheduled
				e.w = nil
				w.n--
				fired++
				fire(e)
			} else {
				w.insert(e)
			}
		}
		l.occupied &^= 1 << s
	}
	w.elapsed = target
	return fired
}
