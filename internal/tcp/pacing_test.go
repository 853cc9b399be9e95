package tcp

import (
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
)

// pacedCC is a controller with a large window that asks for pacing at a
// fixed rate.
type pacedCC struct {
	cc.NewReno
	rate int64
}

func (p *pacedCC) PacingRate() int64 { return p.rate }

// When the controller asks for a rate, the engine spaces data segments
// by their transmission time at that rate: 1000 octets at 100 000 B/s
// are 10 ms apart. The pacing timer is part of Deadline.
func TestPacingSpacesSegmentsAtTheControllersRate(t *testing.T) {
	cfg := testConfig()
	cfg.CC = func() cc.Controller {
		p := &pacedCC{rate: 100000}
		p.NewReno = *mustNewReno(t, cc.Config{InitialWindow: 10})
		return p
	}
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(3000, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if d := h.c.Deadline(); d != 20*time.Millisecond {
		t.Fatalf("deadline %v, want the pacing timer at 20ms", d)
	}
	h.at(15 * time.Millisecond) // early: nothing
	h.at(20*time.Millisecond, "<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	// The peer's data is acknowledged by delayed ACK as usual; here the
	// next paced segment carries the acknowledgment.
	h.now = 25 * time.Millisecond
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.at(30*time.Millisecond, "<SEQ=2101><ACK=1301><CTL=PSH,ACK><WND=7000><DATA=1000>")
}

func mustNewReno(t *testing.T, cfg cc.Config) *cc.NewReno {
	t.Helper()
	r, err := cc.NewNewReno(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
