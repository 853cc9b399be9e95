package ultcp

import (
	"fmt"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
)

// IP header fields an application chooses (RFC 9293 §3.9.1.1): the
// DiffServ codepoint (MUST-48, RFC 2474: the upper six bits of the old TOS
// octet; the lower two are ECN's, RFC 3168, which the stack does not
// negotiate on the fabric and leaves zero) and the time to live (MUST-49).
// Config sets them for every connection of a stack, Conn.SetDSCP and
// Conn.SetTTL change them for one; encodeHeaders writes them into every
// packet.

// DefaultTTL is the TTL of sent packets when Config.TTL is zero: 64, as
// Linux's and the BSDs' default and RFC 1700's recommendation.
const DefaultTTL = 64

// ipFields packs the TOS octet (low byte) and the TTL (high byte), so that
// a Conn keeps them in one atomic word: a writer sending outside the
// connection's lock reads them while a setter may change them.
type ipFields uint16

func makeIPFields(dscp, ttl int) ipFields { return ipFields(uint16(dscp)<<2 | uint16(ttl)<<8) }

func (f ipFields) tos() byte { return byte(f) }
func (f ipFields) ttl() byte { return byte(f >> 8) }

func checkDSCP(dscp int) error {
	if dscp < 0 || dscp > 63 {
		return fmt.Errorf("ultcp: DSCP %d is not a 6-bit codepoint (0–63)", dscp)
	}
	return nil
}

func checkTTL(ttl int) error {
	if ttl < 1 || ttl > 255 {
		return fmt.Errorf("ultcp: TTL %d is not in 1–255", ttl)
	}
	return nil
}

// checkIP validates Config.DSCP and Config.TTL (0: DefaultTTL).
func (c *Config) checkIP() error {
	if err := checkDSCP(c.DSCP); err != nil {
		return err
	}
	if c.TTL != 0 {
		return checkTTL(c.TTL)
	}
	return nil
}

// ipFields is what the stack's packets carry unless a Conn changed it.
func (c *Config) ipFields() ipFields {
	ttl := c.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	return makeIPFields(c.DSCP, ttl)
}

// SetDSCP sets the DiffServ codepoint (0–63) of the packets the connection
// sends from now on (RFC 9293 MUST-48; as IP_TOS with the value dscp<<2).
func (c *Conn) SetDSCP(dscp int) error {
	if err := checkDSCP(dscp); err != nil {
		return err
	}
	for {
		old := c.ip.Load()
		if c.ip.CompareAndSwap(old, uint32(makeIPFields(dscp, int(ipFields(old).ttl())))) {
			return nil
		}
	}
}

// SetTTL sets the time to live (1–255) of the packets the connection sends
// from now on (RFC 9293 MUST-49; as IP_TTL).
func (c *Conn) SetTTL(ttl int) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	for {
		old := c.ip.Load()
		if c.ip.CompareAndSwap(old, uint32(makeIPFields(int(ipFields(old).tos()>>2), ttl))) {
			return nil
		}
	}
}

// keepAliveIdle is the idle time SetKeepAlive(true) switches keepalive on
// with: the one already set (SetKeepAlivePeriod or Config.KeepAlive), or
// else two hours, as RFC 9293 MUST-28 requires of a default (not the 15 s
// of Go's net.Dialer, whose own default keepalive this switch is not).
func (c *Conn) keepAliveIdle() time.Duration {
	c.mu.Lock()
	d := c.tc.KeepAlive()
	c.mu.Unlock()
	if d <= 0 {
		d = tcp.DefaultKeepAliveIdle
	}
	return d
}
