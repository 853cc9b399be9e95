package ultcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
)

// fabricCC is the congestion controller of connections inside the fabric:
// none. A ring pair between two processes is a private, lossless,
// in-order path: no router queue to fill, no other flow to be fair to,
// and back-pressure already comes from the receive window and the ring
// itself. RFC 5681's slow start would only cap a fresh connection at a
// few of its 64 KiB segments per round trip. So the window is unlimited
// (a negative CWnd, which the engine reads as "no congestion limit"), and
// a loss report, which the fabric never produces, changes nothing. A
// gateway connection to the outside world uses a real controller.
type fabricCC struct{}

func newFabricCC() cc.Controller { return fabricCC{} }

func (fabricCC) Name() string                          { return "fabric" }
func (fabricCC) Init(time.Duration, int)               {}
func (fabricCC) SetMSS(int)                            {}
func (fabricCC) CWnd() int                             { return -1 }
func (fabricCC) SSThresh() int                         { return cc.InfiniteSSThresh }
func (fabricCC) OnAck(*cc.AckEvent)                    {}
func (fabricCC) OnCongestion(time.Duration, int, bool) {}
func (fabricCC) OnRecoveryEnd(time.Duration)           {}
func (fabricCC) OnRTO(time.Duration, int)              {}
func (fabricCC) Undo(time.Duration)                    {}
func (fabricCC) PacingRate() int64                     { return 0 }
