package tcp

import "testing"

// Found by FuzzConnInput: octets held out of order beyond a FIN that then
// arrives at RCV.NXT can never be delivered (the stream ended), and are
// dropped when the FIN is taken; kept, they would sit at RCV.NXT.
func TestFINDropsOctetsHeldBeyondIt(t *testing.T) {
	h := established(t)
	h.in("<SEQ=302><ACK=101><CTL=ACK><WND=10000><DATA=48>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=101><ACK=302><CTL=ACK><WND=8000>")
	h.state(CloseWait)
	if h.c.rb.nooo != 0 || h.c.stats.DropAfterFIN != 1 {
		t.Fatalf("%d out-of-order ranges kept, %d dropped after FIN; want 0 and 1", h.c.rb.nooo, h.c.stats.DropAfterFIN)
	}
}
