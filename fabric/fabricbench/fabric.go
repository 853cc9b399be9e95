package fabricbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/floor"
	"github.com/ultcp/ultcp/internal/proc"
)

const roleFabric = "fabricbench-fabric"

func init() {
	proc.Register(roleFabric, serveFabric)
}

// The two nodes of a fabric session: this process receives, the child sends.
var (
	receiverAddr = netip.MustParseAddr("10.77.0.1")
	senderAddr   = netip.MustParseAddr("10.77.0.2")
)

// fabricMode is what a fabric subject sets: the only knobs a user has.
type fabricMode struct {
	spin     time.Duration // fabric.Config.SpinBudget: 0 the default, < 0 sleep at once
	ringSize int           // fabric.ConnConfig.RingSize
	dma      bool          // SendDMA instead of Send
}

// Ring sizes: PIO records of up to 1 MiB in a 4 MiB ring, the same
// pipelining room as the bare ring copy; DMA records carry only a
// descriptor, so a small ring does.
const (
	pioRingSize = 4 << 20
	dmaRingSize = 64 << 10
	pingRing    = 4 << 10
)

func fabricSubjects() []Subject {
	return []Subject{
		{Name: FabricSpin, StartLatency: func(cfg floor.Config) (PingPonger, error) {
			return startFabric(cfg, fabricMode{ringSize: pingRing})
		}},
		{Name: FabricSleep, StartLatency: func(cfg floor.Config) (PingPonger, error) {
			return startFabric(cfg, fabricMode{spin: -1, ringSize: pingRing})
		}},
		{Name: FabricPIO, StartStream: func(cfg floor.Config) (Streamer, error) {
			return startFabric(cfg, fabricMode{ringSize: pioRingSize})
		}},
		{Name: FabricDMA, StartStream: func(cfg floor.Config) (Streamer, error) {
			return startFabric(cfg, fabricMode{ringSize: dmaRingSize, dma: true})
		}},
	}
}

// fabricCmd is what the parent asks of the sending child.
type fabricCmd struct {
	Op     string // "stream" or "pingpong"
	Block  int    `json:",omitempty"`
	Total  int64  `json:",omitempty"`
	Rounds int    `json:",omitempty"`
	DMA    bool   `json:",omitempty"` // send with SendDMA
}

type fabricReply struct {
	Err string        `json:",omitempty"`
	CPU time.Duration `json:",omitempty"`
	DMA bool          `json:",omitempty"` // the connection can do DMA
}

// fabricSession is one connection between this process and a child, on a
// fabric of its own in a fresh directory under /dev/shm.
type fabricSession struct {
	cfg   floor.Config
	mode  fabricMode
	dir   string
	node  *fabric.Node
	conn  *fabric.Conn
	child *proc.Child
	enc   *json.Encoder
	dst   []byte
	rec   [8]byte
}

const setupTimeout = 10 * time.Second

func startFabric(cfg floor.Config, m fabricMode) (*fabricSession, error) {
	dir, err := os.MkdirTemp("/dev/shm", "ultcp-bench-")
	if err != nil {
		return nil, fmt.Errorf("fabricbench: %w", err)
	}
	s := &fabricSession{cfg: cfg, mode: m, dir: dir}
	if err := s.start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *fabricSession) start() error {
	f, err := fabric.Open(fabric.Config{Dir: s.dir, SpinBudget: s.mode.spin})
	if err != nil {
		return err
	}
	if s.node, err = f.Join(receiverAddr); err != nil {
		return err
	}
	pin := "0"
	if s.cfg.Pin {
		pin = "1"
	}
	s.child, err = proc.Start(roleFabric, s.dir, strconv.FormatInt(int64(s.mode.spin), 10), strconv.Itoa(s.mode.ringSize), pin)
	if err != nil {
		return err
	}
	s.enc = json.NewEncoder(s.child.Stdin())
	var r fabricReply
	if err := s.recv(&r, setupTimeout); err != nil {
		return err
	}
	if s.mode.dma && !r.DMA {
		return fmt.Errorf("fabricbench: the kernel refuses process_vm_readv here, so fabric DMA cannot be measured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if s.conn, err = s.node.Accept(ctx); err != nil {
		return fmt.Errorf("fabricbench: accepting the sender's connection: %w", err)
	}
	return nil
}

func (s *fabricSession) recv(r *fabricReply, timeout time.Duration) error {
	if err := s.child.Recv(r, timeout); err != nil {
		return err
	}
	if r.Err != "" {
		return fmt.Errorf("fabricbench: sender: %s", r.Err)
	}
	return nil
}

// runDeadline bounds one run of total bytes: 30 s plus 20 ns a byte (as
// slow as 50 MB/s), generous, but a stuck peer still ends the run.
func runDeadline(total int64) time.Time {
	return time.Now().Add(30*time.Second + time.Duration(total)*20)
}

// Close ends the child and removes the fabric directory.
func (s *fabricSession) Close() error {
	var err error
	if s.conn != nil {
		s.conn.Close()
	}
	if s.child != nil {
		_ = s.child.Stdin().Close()
		err = s.child.Wait(5 * time.Second)
	}
	if s.node != nil {
		s.node.Close()
	}
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Stream has the child send total bytes in records of block bytes, with
// Send (PIO) or SendDMA (DMA), and receives them here with Recv into a
// private buffer: the fabric's counterpart of the floors' copy out.
func (s *fabricSession) Stream(block int, total int64) (floor.Stream, error) {
	if block <= 0 || total <= 0 {
		return floor.Stream{}, fmt.Errorf("fabricbench: block size and total must be > 0, got %d, %d", block, total)
	}
	if !s.mode.dma && block > s.conn.MaxRecord() {
		return floor.Stream{}, fmt.Errorf("fabricbench: record of %d bytes does not fit a %d-byte ring", block, s.conn.RingSize())
	}
	if len(s.dst) < block {
		s.dst = make([]byte, block)
	}
	if err := s.enc.Encode(fabricCmd{Op: "stream", Block: block, Total: total, DMA: s.mode.dma}); err != nil {
		return floor.Stream{}, err
	}
	if err := s.conn.SetReadDeadline(runDeadline(total)); err != nil {
		return floor.Stream{}, err
	}
	var res floor.Stream
	err := floor.RunPinned(s.cfg.Pin, 0, func() error {
		// The child says it is ready (buffer allocated and filled) with
		// one record, and starts when it gets one back.
		if _, err := s.conn.Recv(s.rec[:]); err != nil {
			return fmt.Errorf("fabricbench: waiting for the sender: %w", err)
		}
		cpu0, err := floor.ProcessCPU()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := s.conn.Send(s.rec[:1]); err != nil {
			return err
		}
		for got := int64(0); got < total; {
			n, err := s.conn.Recv(s.dst)
			if err != nil {
				return fmt.Errorf("fabricbench: after %d of %d bytes: %w", got, total, err)
			}
			got += int64(n)
		}
		res.Elapsed = time.Since(t0)
		cpu1, err := floor.ProcessCPU()
		res.ReceiverCPU = cpu1 - cpu0
		return err
	})
	if err != nil {
		s.child.Kill()
		return floor.Stream{}, err
	}
	var r fabricReply
	if err := s.recv(&r, setupTimeout); err != nil {
		return floor.Stream{}, err
	}
	res.Block, res.Bytes, res.SenderCPU = block, total, r.CPU
	return res, nil
}

// PingPong bounces one 8-byte record: Send then Recv here, Recv then Send
// in the child.
func (s *fabricSession) PingPong(batches, perBatch int) (floor.Latency, error) {
	if batches <= 0 || perBatch <= 0 {
		return floor.Latency{}, fmt.Errorf("fabricbench: ping-pong needs batches and rounds per batch > 0, got %d, %d", batches, perBatch)
	}
	rounds := batches * perBatch
	if err := s.enc.Encode(fabricCmd{Op: "pingpong", Rounds: rounds}); err != nil {
		return floor.Latency{}, err
	}
	if err := s.conn.SetReadDeadline(runDeadline(int64(rounds) * 1000)); err != nil {
		return floor.Latency{}, err
	}
	half := make([]float64, batches)
	err := floor.RunPinned(s.cfg.Pin, 0, func() error {
		for b := range batches {
			t0 := time.Now()
			for range perBatch {
				if err := s.conn.Send(s.rec[:8]); err != nil {
					return err
				}
				if _, err := s.conn.Recv(s.rec[:]); err != nil {
					return err
				}
			}
			half[b] = float64(time.Since(t0).Nanoseconds()) / float64(2*perBatch)
		}
		return nil
	})
	if err != nil {
		s.child.Kill()
		return floor.Latency{}, err
	}
	var r fabricReply
	if err := s.recv(&r, setupTimeout); err != nil {
		return floor.Latency{}, err
	}
	slices.Sort(half)
	return floor.Latency{MinNs: half[0], MedianNs: half[len(half)/2], Batches: batches, PerBatch: perBatch}, nil
}

// serveFabric is the sending child: it joins the parent's fabric, dials
// the parent, and answers commands from stdin until it is closed.
func serveFabric(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments (dir, spin, ring size, pin), got %d", len(args))
	}
	spin, err1 := strconv.ParseInt(args[1], 10, 64)
	ringSize, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad arguments %q", args)
	}
	pin := args[3] == "1"
	f, err := fabric.Open(fabric.Config{Dir: args[0], SpinBudget: time.Duration(spin)})
	if err != nil {
		return err
	}
	n, err := f.Join(senderAddr)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	c, err := n.Dial(ctx, receiverAddr, fabric.ConnConfig{RingSize: ringSize})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := proc.Send(fabricReply{DMA: c.DMA()}); err != nil {
		return err
	}
	var src []byte
	var rec [8]byte
	dec := json.NewDecoder(os.Stdin)
	for {
		var cmd fabricCmd
		if err := dec.Decode(&cmd); err != nil {
			return nil // stdin closed: the parent is done with us
		}
		var r fabricReply
		err := floor.RunPinned(pin, 1, func() error {
			switch cmd.Op {
			case "pingpong":
				setDeadlines(c, runDeadline(int64(cmd.Rounds)*1000))
				for range cmd.Rounds {
					if _, err := c.Recv(rec[:]); err != nil {
						return err
					}
					if err := c.Send(rec[:8]); err != nil {
						return err
					}
				}
				return nil
			case "stream":
				if cmd.Block <= 0 || cmd.Block > 1<<30 {
					return fmt.Errorf("bad block size %d", cmd.Block)
				}
				if len(src) < cmd.Block {
					src = make([]byte, cmd.Block)
					for i := range src {
						src[i] = byte(i)
					}
				}
				setDeadlines(c, runDeadline(cmd.Total))
				if err := c.Send(rec[:1]); err != nil {
					return err
				}
				if _, err := c.Recv(rec[:]); err != nil {
					return err
				}
				cpu0, err := floor.ProcessCPU()
				if err != nil {
					return err
				}
				for left := cmd.Total; left > 0; {
					k := int64(cmd.Block)
					if left < k {
						k = left
					}
					if cmd.DMA {
						err = c.SendDMA(nil, src[:k])
					} else {
						err = c.Send(src[:k])
					}
					if err != nil {
						return err
					}
					left -= k
				}
				cpu1, err := floor.ProcessCPU()
				r.CPU = cpu1 - cpu0
				return err
			}
			return fmt.Errorf("unknown op %q", cmd.Op)
		})
		if err != nil {
			r = fabricReply{Err: err.Error()}
		}
		if err := proc.Send(r); err != nil {
			return err
		}
	}
}

func setDeadlines(c *fabric.Conn, t time.Time) {
	c.SetReadDeadline(t)
	c.SetWriteDeadline(t)
}
