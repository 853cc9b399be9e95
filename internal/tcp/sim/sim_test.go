package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
)

const mib = 1 << 20

// transferBytes is 64 MiB, or 4 MiB with -short.
func transferBytes() int64 {
	if testing.Short() {
		return 4 * mib
	}
	return 64 * mib
}

// check fails the test unless r is a complete, SHA-verified transfer of
// n bytes within limit simulated seconds.
func check(t *testing.T, r *Result, n int64, limit time.Duration) {
	t.Helper()
	if !r.Completed || !r.SHA256OK || r.Bytes != n || r.Error != "" {
		t.Fatalf("completed %v sha256_ok %v bytes %d of %d, error %q", r.Completed, r.SHA256OK, r.Bytes, n, r.Error)
	}
	if r.SimSeconds > limit.Seconds() {
		t.Fatalf("took %.1f simulated seconds, bound %v", r.SimSeconds, limit)
	}
}

// The transfers: 64 MiB, SHA-256 verified at the receiver, over
// every kind of fault and RTTs from 0.1 ms to 300 ms, each finishing
// within a bound on simulated time (a run that exceeds it stops there
// and fails). The bounds leave room (2-10x) above the times measured
// with SACK and RACK-TLP: 5.6 s without loss, 37 s at 1 %, 112 s at 5 %,
// 670 s at 20 % (mostly backed-off timeouts), 9 s at 300 ms.
func TestTransfer(t *testing.T) {
	type tc struct {
		name  string
		rtt   time.Duration
		fault func(fwd, rev *Link)
		limit time.Duration
	}
	none := func(fwd, rev *Link) {}
	for _, c := range []tc{
		{"no loss", 10 * time.Millisecond, none, 30 * time.Second},
		{"1% loss", 10 * time.Millisecond, func(f, _ *Link) { f.Loss = 0.01 }, 2 * time.Minute},
		{"5% loss", 10 * time.Millisecond, func(f, _ *Link) { f.Loss = 0.05 }, 10 * time.Minute},
		{"20% loss", 10 * time.Millisecond, func(f, _ *Link) { f.Loss = 0.20 }, 30 * time.Minute},
		{"5% loss both ways", 10 * time.Millisecond, func(f, r *Link) { f.Loss, r.Loss = 0.05, 0.05 }, 10 * time.Minute},
		{"burst loss", 10 * time.Millisecond, func(f, _ *Link) {
			f.Burst = GilbertElliott{PGoodBad: 0.002, PBadGood: 0.3, LossBad: 0.7}
		}, time.Minute},
		{"10% reordering", 10 * time.Millisecond, func(f, _ *Link) { f.Reorder = 0.1 }, time.Minute},
		{"5% duplication", 10 * time.Millisecond, func(f, _ *Link) { f.Dup = 0.05 }, 30 * time.Second},
		{"1% corruption", 10 * time.Millisecond, func(f, _ *Link) { f.Corrupt = 0.01 }, 2 * time.Minute},
		{"RTT 0.1 ms", 100 * time.Microsecond, none, 30 * time.Second},
		{"RTT 1 ms", time.Millisecond, none, 30 * time.Second},
		{"RTT 50 ms", 50 * time.Millisecond, none, time.Minute},
		{"RTT 300 ms", 300 * time.Millisecond, none, time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := transferBytes()
			fwd, rev := Path(100e6, c.rtt, 0)
			c.fault(&fwd, &rev)
			r, err := Run(Config{Bytes: n, Forward: fwd, Reverse: rev, Seed: 1, TimeLimit: c.limit})
			if err != nil {
				t.Fatal(err)
			}
			check(t, r, n, c.limit)
			t.Logf("%.1f s simulated, %.1f Mbit/s, %d retransmits (%d spurious), %d timeouts",
				r.SimSeconds, r.GoodputBps/1e6, r.Retransmits, r.SpuriousRetransmits, r.Timeouts)
		})
	}
}

func TestTransferWithEachController(t *testing.T) {
	for _, name := range []string{"newreno", "cubic"} {
		fwd, rev := Path(100e6, 20*time.Millisecond, 0)
		fwd.Loss = 0.01
		r, err := Run(Config{Bytes: 8 * mib, CC: name, Forward: fwd, Reverse: rev, Seed: 3, TimeLimit: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		check(t, r, 8*mib, 5*time.Minute)
		if r.CC != name {
			t.Fatalf("result names controller %q, want %q", r.CC, name)
		}
	}
}

// Every corrupted packet that arrives is dropped by a checksum at the
// receiving side (with no duplication, none has an intact twin), and the
// stream is still intact. (One may still be on the wire when the
// receiver reads the end of the stream.)
func TestCorruptionIsCaughtByTheChecksum(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 0)
	fwd.Corrupt, rev.Corrupt = 0.02, 0.02
	r, err := Run(Config{Bytes: 4 * mib, Forward: fwd, Reverse: rev, Seed: 5, TimeLimit: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 4*mib, 5*time.Minute)
	corrupted := r.Forward.Corrupted + r.Reverse.Corrupted
	if corrupted == 0 || r.CorruptArrived == 0 || r.ChecksumDrops != r.CorruptArrived {
		t.Fatalf("%d packets corrupted, %d of them arrived, %d dropped by checksums; want those that arrived all dropped, and some",
			corrupted, r.CorruptArrived, r.ChecksumDrops)
	}
}

// With no loss and no reordering, and a queue that never overflows,
// nothing is retransmitted.
func TestCleanPathHasNoRetransmissions(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 64*mib)
	r, err := Run(Config{Bytes: 4 * mib, Forward: fwd, Reverse: rev, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 4*mib, time.Minute)
	if r.Retransmits != 0 || r.Forward.QueueDrops != 0 {
		t.Fatalf("%d retransmits, %d queue drops on a clean path, want 0", r.Retransmits, r.Forward.QueueDrops)
	}
	if r.RTT.Samples == 0 || r.RTT.MinMs < 10 {
		t.Fatalf("RTT %+v: want samples no lower than the 10 ms propagation RTT", r.RTT)
	}
}

// Reordering without loss: whatever the sender retransmits, the link
// was delivering anyway, so every retransmission is counted spurious.
func TestReorderingRetransmissionsAreSpurious(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 64*mib)
	fwd.Reorder = 0.05
	r, err := Run(Config{Bytes: 4 * mib, Forward: fwd, Reverse: rev, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 4*mib, 5*time.Minute)
	if r.SpuriousRetransmits != r.Retransmits {
		t.Fatalf("%d retransmits, %d spurious; on a lossless path all are spurious", r.Retransmits, r.SpuriousRetransmits)
	}
}

// The requirement, end to end: reordering makes the sender
// retransmit segments that were only late; the receiver reports the
// duplicates in D-SACK blocks (RFC 2883) and the sender undoes the
// congestion responses they caused, so most of the window survives.
func TestReorderingRetransmissionsAreUndone(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 64*mib)
	fwd.Reorder = 0.05
	r, err := Run(Config{Bytes: 4 * mib, Forward: fwd, Reverse: rev, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 4*mib, 5*time.Minute)
	if r.Sender.DSACKsRcvd == 0 || r.Sender.SpuriousUndos == 0 {
		t.Fatalf("%d spurious retransmits, %d D-SACKs, %d undos; want the D-SACKs to undo them",
			r.SpuriousRetransmits, r.Sender.DSACKsRcvd, r.Sender.SpuriousUndos)
	}
}

// Loss without reordering: a fast retransmission repairs a real loss,
// so most retransmissions are needed.
func TestLossRetransmissionsAreMostlyNeeded(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 64*mib)
	fwd.Loss = 0.01
	r, err := Run(Config{Bytes: 4 * mib, Forward: fwd, Reverse: rev, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 4*mib, 5*time.Minute)
	if r.Retransmits < r.Forward.Lost || 2*r.SpuriousRetransmits > r.Retransmits {
		t.Fatalf("%d lost, %d retransmits, %d spurious; want every loss repaired and most retransmits needed",
			r.Forward.Lost, r.Retransmits, r.SpuriousRetransmits)
	}
}

// A run is a function of its Config: the same seed gives the same
// result, to the last counter and sample; another seed, another run.
func TestRunIsDeterministic(t *testing.T) {
	run := func(seed uint64) (*Result, string) {
		fwd, rev := Path(50e6, 20*time.Millisecond, 0)
		fwd.Loss, fwd.Reorder, fwd.Dup, fwd.Corrupt, rev.Loss = 0.01, 0.01, 0.01, 0.01, 0.01
		r, err := Run(Config{Bytes: 2 * mib, Forward: fwd, Reverse: rev, Seed: seed, TimeLimit: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(struct {
			R *Result
			S []Sample
			T []time.Duration
		}{r, r.Series, r.RTTs})
		return r, string(b)
	}
	r1, a := run(7)
	_, b := run(7)
	if a != b {
		t.Fatal("two runs with seed 7 differ")
	}
	check(t, r1, 2*mib, 10*time.Minute)
	if _, c := run(8); c == a {
		t.Fatal("seeds 7 and 8 gave identical runs")
	}
}

func TestTimeLimitEndsAnUnfinishedRun(t *testing.T) {
	fwd, rev := Path(10e6, 100*time.Millisecond, 0)
	r, err := Run(Config{Bytes: 64 * mib, Forward: fwd, Reverse: rev, TimeLimit: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed || r.SHA256OK || !strings.Contains(r.Error, "time limit") || r.SimSeconds != 2 {
		t.Fatalf("completed %v sha %v sim %v error %q; want an incomplete run stopped at 2 s", r.Completed, r.SHA256OK, r.SimSeconds, r.Error)
	}
	if r.Bytes == 0 || r.Bytes >= 64*mib {
		t.Fatalf("delivered %d bytes in 2 s at 10 Mbit/s", r.Bytes)
	}
}

// A path that loses everything: the sender gives up (RFC 9293 R2) and the
// run reports the failure instead of hanging.
func TestDeadPathFails(t *testing.T) {
	fwd, rev := Path(10e6, 10*time.Millisecond, 0)
	fwd.Loss = 1
	r, err := Run(Config{Bytes: mib, Forward: fwd, Reverse: rev, TimeLimit: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed || r.Error == "" {
		t.Fatalf("completed %v error %q over a dead path", r.Completed, r.Error)
	}
}

func TestEmptyTransfer(t *testing.T) {
	fwd, rev := Path(10e6, 10*time.Millisecond, 0)
	r, err := Run(Config{Bytes: 0, Forward: fwd, Reverse: rev})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 0, time.Second)
}

func TestInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Bytes: -1}, "negative byte count"},
		{Config{Bytes: 1, CC: "bbr"}, "unknown congestion control"},
		{Config{Bytes: 1, Forward: Link{Loss: 2}}, "forward link"},
		{Config{Bytes: 1, Reverse: Link{Dup: -1}}, "reverse link"},
		{Config{Bytes: 1, MSS: -5}, "negative"},
	} {
		if _, err := Run(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

// The series is bounded, in time order, and shows the window opening.
func TestSeries(t *testing.T) {
	fwd, rev := Path(100e6, 20*time.Millisecond, 0)
	var reports int
	r, err := Run(Config{Bytes: 16 * mib, Forward: fwd, Reverse: rev, SampleEvery: 100 * time.Microsecond,
		Progress: func(Progress) { reports++ }})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 16*mib, time.Minute)
	if n := len(r.Series); n < MaxSamples/2 || n > MaxSamples {
		t.Fatalf("%d samples, want between %d and %d", n, MaxSamples/2, MaxSamples)
	}
	maxCwnd := 0
	for i, s := range r.Series {
		if i > 0 && (s.T <= r.Series[i-1].T || s.Delivered < r.Series[i-1].Delivered) {
			t.Fatalf("sample %d (%+v) goes back in time or delivery after %+v", i, s, r.Series[i-1])
		}
		maxCwnd = max(maxCwnd, s.CWnd)
	}
	if maxCwnd < BDP(100e6, 20*time.Millisecond) {
		t.Fatalf("largest cwnd %d, want at least one BDP", maxCwnd)
	}
	if reports < int(r.SimSeconds) {
		t.Fatalf("%d progress reports in %.1f simulated seconds, want one a second", reports, r.SimSeconds)
	}
}

func BenchmarkTransfer1MiB(b *testing.B) {
	b.ReportAllocs()
	fwd, rev := Path(1e9, time.Millisecond, 0)
	for b.Loop() {
		r, err := Run(Config{Bytes: mib, Forward: fwd, Reverse: rev})
		if err != nil || !r.SHA256OK {
			b.Fatal(err, r.Error)
		}
	}
	b.SetBytes(mib)
}

// ECN (RFC 3168) end to end: the queue marks instead of dropping once it
// holds a quarter of a BDP, the receiver echoes, the sender reduces; the
// transfer completes with the congestion signalled by marks.
func TestECNMarksReplaceQueueDrops(t *testing.T) {
	fwd, rev := Path(100e6, 20*time.Millisecond, 0)
	fwd.ECNMark = BDP(100e6, 20*time.Millisecond) / 4
	r, err := Run(Config{Bytes: 16 * mib, Forward: fwd, Reverse: rev, Seed: 1, ECN: true})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, 16*mib, time.Minute)
	plain, err := Run(Config{Bytes: 16 * mib, Forward: fwd, Reverse: rev, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ECN: %d marked, %d responses, %d queue drops, %.1f Mbit/s; without: %d queue drops, %.1f Mbit/s",
		r.Forward.ECNMarked, r.Sender.ECNResponses, r.Forward.QueueDrops, r.GoodputBps/1e6, plain.Forward.QueueDrops, plain.GoodputBps/1e6)
	if r.Forward.ECNMarked == 0 || r.Sender.ECNResponses == 0 || r.Receiver.ECNCE == 0 {
		t.Fatalf("marked %d, echoed responses %d, CE received %d; want all nonzero", r.Forward.ECNMarked, r.Sender.ECNResponses, r.Receiver.ECNCE)
	}
	if r.Forward.QueueDrops >= plain.Forward.QueueDrops {
		t.Fatalf("%d queue drops with ECN, %d without; want fewer", r.Forward.QueueDrops, plain.Forward.QueueDrops)
	}
}

// Config.Trace sees every packet each endpoint offers its link, and which
// of them the link dropped: its counts are the links' own.
func TestTraceSeesEveryPacketAndItsFate(t *testing.T) {
	fwd, rev := Path(100e6, 10*time.Millisecond, 0)
	fwd.Loss, rev.Loss = 0.02, 0.02
	var sent, dropped [2]int64
	r, err := Run(Config{Bytes: mib, Forward: fwd, Reverse: rev, Seed: 2,
		Trace: func(now time.Duration, from int, seg *tcp.Segment, lost bool) {
			sent[from]++
			if lost {
				dropped[from]++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, mib, time.Minute)
	for i, l := range [2]LinkStats{r.Forward, r.Reverse} {
		if sent[i] != l.Packets || dropped[i] != l.Lost+l.QueueDrops || dropped[i] == 0 {
			t.Errorf("endpoint %d: traced %d packets, %d dropped; link offered %d, lost %d, queue-dropped %d",
				i, sent[i], dropped[i], l.Packets, l.Lost, l.QueueDrops)
		}
	}
}
