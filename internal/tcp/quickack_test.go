package tcp

import (
	"strconv"
	"testing"
)

// After a hole (an out-of-order arrival) the receiver ACKs the next
// quickAcksAfterHole in-order segments, the one filling the hole
// included, at once instead of delaying them
// (RFC 5681 §4.2 leaves room; Linux's quick-ACK mode does the same): the
// sender is repairing a loss, and a delayed ACK of its last segment
// leaves it idle for 40 ms. Then delayed ACKs resume.
func TestReceiverAcksAtOnceAfterAHole(t *testing.T) {
	h := establishedSACK(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>") // delayed
	h.in("<SEQ=501><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=501-601>")
	h.in("<SEQ=401><ACK=101><CTL=ACK><WND=10000><DATA=100>", // fills the hole
		"<SEQ=101><ACK=601><CTL=ACK><WND=7700>")
	seq := 601
	for i := 1; i < quickAcksAfterHole; i++ {
		seq += 100
		h.in("<SEQ="+strconv.Itoa(seq-100)+"><ACK=101><CTL=ACK><WND=10000><DATA=100>",
			"<SEQ=101><ACK="+strconv.Itoa(seq)+"><CTL=ACK><WND="+strconv.Itoa(8000-(seq-301))+">")
	}
	h.in("<SEQ=" + strconv.Itoa(seq) + "><ACK=101><CTL=ACK><WND=10000><DATA=100>") // delayed again
	if h.c.delackAt == 0 {
		t.Fatal("the segment after the quick ACKs armed no delayed ACK")
	}
}
