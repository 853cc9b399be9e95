package lb

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeLoad is a member's load as a test sets it.
type fakeLoad struct {
	occ   int64
	cons  uint64
	conns int
}

func (f *fakeLoad) Occupancy() int64 { return f.occ }
func (f *fakeLoad) Consumed() uint64 { return f.cons }
func (f *fakeLoad) Conns() int       { return f.conns }

var vip = netip.MustParseAddrPort("10.77.255.1:80")

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(i)}) }

// pool makes a service with members 10.77.0.1, .2, ... of the given
// weights, each with its own fakeLoad.
func pool(t testing.TB, cfg Config, weights ...int) (*Service, []*fakeLoad) {
	t.Helper()
	s, err := NewService(vip, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var loads []*fakeLoad
	for i, w := range weights {
		l := &fakeLoad{}
		if _, err := s.Join(addr(i+1), w, l); err != nil {
			t.Fatal(err)
		}
		loads = append(loads, l)
	}
	return s, loads
}

// picks returns the last octet of the members chosen by n picks.
func picks(t testing.TB, s *Service, n int) []int {
	t.Helper()
	var out []int
	for i := 0; i < n; i++ {
		m, err := s.Pick(uint64(i) * 0x9E3779B97F4A7C15)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, int(m.Addr().As4()[3]))
	}
	return out
}

func TestRoundRobinCyclesInJoinOrder(t *testing.T) {
	s, _ := pool(t, Config{Policy: RoundRobin}, 1, 1, 1)
	if got, want := picks(t, s, 7), []int{1, 2, 3, 1, 2, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
}

func TestRoundRobinWeightedIsSmooth(t *testing.T) {
	// nginx's smooth weighted round robin with weights 5,1,1: a a b a c a a.
	s, _ := pool(t, Config{Policy: RoundRobin}, 5, 1, 1)
	if got, want := picks(t, s, 7), []int{1, 1, 2, 1, 3, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
}

func TestRoundRobinSkipsMemberThatLeft(t *testing.T) {
	s, _ := pool(t, Config{Policy: RoundRobin}, 1, 1, 1)
	if err := s.Leave(addr(2)); err != nil {
		t.Fatal(err)
	}
	if got, want := picks(t, s, 4), []int{1, 3, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
}

func TestLeastConnChoosesFewestConns(t *testing.T) {
	s, l := pool(t, Config{Policy: LeastConn}, 1, 1, 1)
	l[0].conns, l[1].conns, l[2].conns = 3, 1, 2
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2 (1 conn against 3 and 2)", got[0])
	}
}

func TestLeastConnRotatesAmongEqual(t *testing.T) {
	s, l := pool(t, Config{Policy: LeastConn}, 1, 1, 1)
	l[0].conns, l[1].conns, l[2].conns = 1, 1, 2
	// The counts stay as set (the fake does not count picks), so the
	// scan starting after the last choice alternates the two tied members.
	if got, want := picks(t, s, 4), []int{1, 2, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
}

func TestLeastConnDividesByWeight(t *testing.T) {
	s, l := pool(t, Config{Policy: LeastConn}, 2, 1)
	// 4 conns at weight 2 (2 per unit) beat 3 conns at weight 1.
	l[0].conns, l[1].conns = 4, 3
	if got := picks(t, s, 1); got[0] != 1 {
		t.Fatalf("picked .%d, want .1 (4/2 < 3/1)", got[0])
	}
}

func TestLeastConnEqualRatioGoesToHigherWeight(t *testing.T) {
	s, l := pool(t, Config{Policy: LeastConn}, 1, 2)
	l[0].conns, l[1].conns = 2, 4
	for i, got := range picks(t, s, 3) {
		if got != 2 {
			t.Fatalf("pick %d chose .%d, want .2 (ratio 2 both, weight 2 > 1)", i, got)
		}
	}
}

func TestLeastConnCountsAssignmentsThroughLoad(t *testing.T) {
	// A gateway that counts each conn at Pick (as Load.Conns requires)
	// spreads a burst evenly.
	s, l := pool(t, Config{Policy: LeastConn}, 1, 1, 1)
	counts := map[int]int{}
	for i := 0; i < 30; i++ {
		m, err := s.Pick(0)
		if err != nil {
			t.Fatal(err)
		}
		o := int(m.Addr().As4()[3])
		l[o-1].conns++
		counts[o]++
	}
	if counts[1] != 10 || counts[2] != 10 || counts[3] != 10 {
		t.Fatalf("30 picks spread %v, want 10 each", counts)
	}
}

func TestPickWithNoMemberFails(t *testing.T) {
	for _, p := range Policies {
		s, _ := pool(t, Config{Policy: p, TableSize: 13}, 1)
		if err := s.Leave(addr(1)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pick(7); !errors.Is(err, ErrNoMember) {
			t.Errorf("%v: Pick on an empty pool: %v, want ErrNoMember", p, err)
		}
		if got := s.Metrics().NoMember; got != 1 {
			t.Errorf("%v: NoMember = %d, want 1", p, got)
		}
	}
}

func TestNoPolicyPicksMemberThatLeft(t *testing.T) {
	for _, p := range Policies {
		s, l := pool(t, Config{Policy: p, TableSize: 251}, 1, 1, 1, 1)
		// Make the member that leaves the most attractive one.
		l[0].conns, l[1].conns, l[2].conns, l[3].conns = 9, 0, 9, 9
		l[0].occ, l[1].occ, l[2].occ, l[3].occ = 4000, 0, 4000, 4000
		s.Tick(0)
		if err := s.Leave(addr(2)); err != nil {
			t.Fatal(err)
		}
		for i, o := range picks(t, s, 200) {
			if o == 2 {
				t.Fatalf("%v: pick %d went to .2, which left", p, i)
			}
		}
	}
}

func TestJoinTwiceIsAnError(t *testing.T) {
	s, _ := pool(t, Config{}, 1)
	if _, err := s.Join(addr(1), 1, &fakeLoad{}); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("second Join: %v, want ErrMemberExists", err)
	}
}

func TestJoinRejectsBadArguments(t *testing.T) {
	s, _ := pool(t, Config{})
	for _, c := range []struct {
		name   string
		addr   netip.Addr
		weight int
		load   Load
		want   string
	}{
		{"invalid address", netip.Addr{}, 1, &fakeLoad{}, "invalid address"},
		{"zero weight", addr(1), 0, &fakeLoad{}, "weight 0 out of range"},
		{"nil load", addr(1), 1, nil, "nil Load"},
	} {
		if _, err := s.Join(c.addr, c.weight, c.load); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestLeaveUnknownIsAnError(t *testing.T) {
	s, _ := pool(t, Config{}, 1)
	if err := s.Leave(addr(9)); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Leave of a stranger: %v, want ErrUnknown", err)
	}
}

func TestNewServiceRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{TableSize: 12}, "not a prime"},
		{Config{Interval: -time.Second}, "negative Interval"},
		{Config{Slack: -1}, "negative slack"},
		{Config{Policy: 9}, "unknown policy"},
	} {
		if _, err := NewService(vip, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestParsePolicyRoundTrips(t *testing.T) {
	for _, p := range Policies {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePolicy("random"); err == nil {
		t.Error("ParsePolicy(random) succeeded")
	}
}

func TestMetricsCountAssignments(t *testing.T) {
	s, _ := pool(t, Config{Policy: RoundRobin}, 1, 1)
	picks(t, s, 5)
	if a, b := s.Member(addr(1)).Metrics().Assigned, s.Member(addr(2)).Metrics().Assigned; a != 3 || b != 2 {
		t.Fatalf("assigned %d and %d, want 3 and 2", a, b)
	}
	if got := s.Metrics().Picks; got != 5 {
		t.Fatalf("Picks = %d, want 5", got)
	}
}
