package lb

import (
	"testing"
	"time"
)

// FuzzService drives a service with an arbitrary sequence of joins,
// leaves, readings with arbitrary loads, and picks, and checks that it
// never panics and never picks a member that is not up.
func FuzzService(f *testing.F) {
	f.Add(uint8(0), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(uint8(4), []byte{0, 0, 0, 9, 9, 9, 200, 3, 3, 3, 3, 1, 250})
	f.Fuzz(func(t *testing.T, policy uint8, ops []byte) {
		s, err := NewService(vip, Config{Policy: Policy(policy % uint8(len(Policies))), TableSize: 251})
		if err != nil {
			t.Fatal(err)
		}
		loads := make([]*fakeLoad, 8)
		for i := range loads {
			loads[i] = &fakeLoad{}
		}
		now := time.Duration(0)
		for i, op := range ops {
			m := int(op>>3) % 8
			switch op & 7 {
			case 0, 1:
				s.Join(addr(m+1), int(op>>6)+1, loads[m]) // errors allowed
			case 2:
				s.Leave(addr(m + 1))
			case 3:
				loads[m].occ = int64(op) * 37 * int64(i%3-1) // sometimes negative
				loads[m].cons += uint64(op) % 5 * 100
				loads[m].conns = int(op) % 7
			case 4:
				loads[m].cons = 0 // a counter that goes back
			case 5:
				now += time.Duration(op) * 50 * time.Millisecond
				s.Tick(now)
			default:
				got, err := s.Pick(uint64(op) * 0x9E3779B97F4A7C15)
				if err != nil {
					if s.Metrics().Up != 0 {
						t.Fatalf("Pick failed with %d members up: %v", s.Metrics().Up, err)
					}
					continue
				}
				if got.State() != Up {
					t.Fatalf("Pick chose %v, which is %v", got.Addr(), got.State())
				}
			}
		}
	})
}
