package tcp

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// The test harness: segments are written in RFC 9293's notation, fed to a
// Conn at a fake time, and what comes out is compared, as text, with the
// literal segments the RFC prescribes.
//
// Input notation: <SEQ=n><ACK=n><CTL=SYN,ACK,...><WND=n> and optionally
// <MSS=n><WS=n><SACKOK><TS=val,ecr><SACK=left-right,...><UP=n>, <DATA=n> for n payload octets and
// <TEXT=abc> for literal payload. Unless TEXT is given, the payload octet
// numbered s is byte(s) (a SYN's data starts at SEG.SEQ+1), so what the
// reader gets can be checked by its sequence numbers. Output is printed by Segment.String in the same
// notation, with <DATA=n> giving the payload length.

const (
	localPort = 1234
	peerPort  = 80
)

// testConfig is small and option-free so that literal segments stay short:
// MSS 1000, an 8000-octet receive buffer, no RFC 7323 options and no SACK
// (sack_test.go turns it on).
func testConfig() Config {
	return Config{MSS: 1000, RecvBuf: 8000, MaxRecvBuf: 8000, NoTimestamps: true, NoWindowScale: true, NoSACK: true}
}

type harness struct {
	t   *testing.T
	c   *Conn
	now time.Duration
	out []Segment
}

func parseSeg(t testing.TB, spec string) Segment {
	t.Helper()
	var s Segment
	h := &s.Hdr
	h.SrcPort, h.DstPort = peerPort, localPort
	ackSeen := false
	for _, f := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(spec, "<"), ">"), "><") {
		k, v, _ := strings.Cut(f, "=")
		num := func(x string) uint32 {
			n, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				t.Fatalf("bad number %q in %q", x, spec)
			}
			return uint32(n)
		}
		switch k {
		case "SEQ":
			h.Seq = num(v)
		case "ACK":
			h.Ack, ackSeen = num(v), true
		case "CTL":
			for _, name := range strings.Split(v, ",") {
				if name == "" {
					continue
				}
				i := slices.Index(flagNames[:], name)
				if i < 0 {
					t.Fatalf("bad flag %q in %q", name, spec)
				}
				h.Flags |= wire.TCPFlags(1 << i)
			}
		case "WND":
			h.Window = uint16(num(v))
		case "MSS":
			h.Options.MSS = uint16(num(v))
		case "WS":
			h.Options.HasWScale, h.Options.WScale = true, uint8(num(v))
		case "TS":
			a, b, _ := strings.Cut(v, ",")
			h.Options.HasTimestamp, h.Options.TSVal, h.Options.TSEcr = true, num(a), num(b)
		case "UP":
			h.Urgent = uint16(num(v))
		case "SACKOK":
			h.Options.SACKPermitted = true
		case "SACK":
			for _, blk := range strings.Split(v, ",") {
				l, r, _ := strings.Cut(blk, "-")
				if int(h.Options.NumSACK) == len(h.Options.SACK) {
					t.Fatalf("too many SACK blocks in %q", spec)
				}
				h.Options.SACK[h.Options.NumSACK] = wire.SACKBlock{Left: num(l), Right: num(r)}
				h.Options.NumSACK++
			}
		case "DATA":
			s.Payload = make([]byte, num(v))
		case "TEXT":
			s.Payload = []byte(v)
		default:
			t.Fatalf("bad field %q in %q", k, spec)
		}
	}
	if _, ok := textOf(spec); !ok {
		// Number the octets: the first is SEG.SEQ, or SEG.SEQ+1 on a SYN.
		first := h.Seq
		if h.Flags&wire.FlagSYN != 0 {
			first++
		}
		for i := range s.Payload {
			s.Payload[i] = byte(first + uint32(i))
		}
	}
	if ackSeen != (h.Flags&wire.FlagACK != 0) {
		t.Fatalf("ACK field and ACK flag disagree in %q", spec)
	}
	return s
}

// textOf reports whether spec gives its payload literally.
func textOf(spec string) (string, bool) {
	_, v, ok := strings.Cut(spec, "<TEXT=")
	return v, ok
}

func format(segs []Segment) []string {
	r := make([]string, len(segs))
	for i := range segs {
		r[i] = segs[i].String()
	}
	return r
}

func (h *harness) check(what string, got []Segment, want []string) {
	h.t.Helper()
	g := format(got)
	if !slices.Equal(g, want) {
		h.t.Fatalf("%s at t=%v (state %v):\n got: %s\nwant: %s", what, h.now, h.c.state,
			strings.Join(g, "\n      "), strings.Join(want, "\n      "))
	}
}

// in feeds spec and checks the segments sent in answer.
func (h *harness) in(spec string, want ...string) {
	h.t.Helper()
	s := parseSeg(h.t, spec)
	h.out = h.c.Input(h.now, &s, h.out[:0])
	h.check("after "+spec, h.out, want)
}

// at advances the clock to t, runs due timers and checks the output.
func (h *harness) at(t time.Duration, want ...string) {
	h.t.Helper()
	h.now = t
	h.out = h.c.OnTimer(h.now, h.out[:0])
	h.check("timers", h.out, want)
}

// output runs Output and checks what it sends.
func (h *harness) output(want ...string) {
	h.t.Helper()
	h.out = h.c.Output(h.now, h.out[:0])
	h.check("output", h.out, want)
}

// write queues n octets numbered from the current end of the send
// stream (octet s is byte(s)) and checks the segments Output then sends.
func (h *harness) write(n int, want ...string) {
	h.t.Helper()
	p := make([]byte, n)
	base := h.c.sb.end()
	for i := range p {
		p[i] = byte(base + uint32(i))
	}
	k, err := h.c.Write(p)
	if err != nil || k != n {
		h.t.Fatalf("Write(%d) = %d, %v", n, k, err)
	}
	h.output(want...)
}

func (h *harness) state(want State) {
	h.t.Helper()
	if h.c.state != want {
		h.t.Fatalf("state %v, want %v", h.c.state, want)
	}
}

// readAll reads everything readable and checks that octet s is byte(s),
// starting at sequence number first.
func (h *harness) readAll(first uint32, n int) {
	h.t.Helper()
	p := make([]byte, n+1)
	k, err := h.c.Read(p)
	if k != n {
		h.t.Fatalf("Read got %d octets (err %v), want %d", k, err, n)
	}
	for i := 0; i < k; i++ {
		if p[i] != byte(first+uint32(i)) {
			h.t.Fatalf("octet %d is %d, want %d", i, p[i], byte(first+uint32(i)))
		}
	}
}

// dialed opens actively with ISS 100 and checks the SYN.
func dialed(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{synOf(100, cfg)})
	return h
}

func synOf(iss uint32, cfg Config) string {
	cfg = cfg.withDefaults()
	return "<SEQ=" + strconv.Itoa(int(iss)) + "><CTL=SYN><WND=" + strconv.Itoa(min(cfg.RecvBuf, 65535)) +
		"><MSS=" + strconv.Itoa(cfg.MSS) + ">"
}

// established completes an active open: ISS 100, the peer's ISS 300 and
// window 10000, both MSS 1000, at t=10ms (one RTT sample of 10ms).
func established(t *testing.T) *harness {
	t.Helper()
	h := dialed(t, testConfig())
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
	return h
}

// passive completes a passive open: ISS 100 answering the peer's ISS 300.
func passive(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.state(SynReceived)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>")
	h.state(Established)
	return h
}
