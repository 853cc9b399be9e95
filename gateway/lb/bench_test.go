package lb

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkPick measures one Pick per policy with 4 and 64 members, the
// members' loads changing between readings as they would under traffic.
func BenchmarkPick(b *testing.B) {
	for _, p := range Policies {
		for _, n := range []int{4, 64} {
			b.Run(fmt.Sprintf("%v/%d", p, n), func(b *testing.B) {
				w := make([]int, n)
				for i := range w {
					w[i] = 1
				}
				s, l := pool(b, Config{Policy: p}, w...)
				for i := range l {
					l[i].occ = int64(100 * (i%7 + 1))
					l[i].conns = i % 5
				}
				s.Tick(0)
				for i := range l {
					l[i].cons += uint64(50 * (i%3 + 1))
				}
				s.Tick(ms)
				b.ReportAllocs()
				h := uint64(0)
				for b.Loop() {
					h += 0x9E3779B97F4A7C15
					if _, err := s.Pick(h); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTick measures one reading of 64 members.
func BenchmarkTick(b *testing.B) {
	w := make([]int, 64)
	for i := range w {
		w[i] = 1
	}
	s, l := pool(b, Config{Policy: Queue}, w...)
	b.ReportAllocs()
	now := ms
	for b.Loop() {
		for i := range l {
			l[i].occ = int64(100 * (i%7 + 1))
			l[i].cons += 100
		}
		s.Tick(now)
		now += ms
	}
}

func BenchmarkFlowHash(b *testing.B) {
	src := netip.MustParseAddrPort("192.168.77.2:40000")
	b.ReportAllocs()
	var h uint64
	for b.Loop() {
		h += FlowHash(h, src, vip)
	}
}
