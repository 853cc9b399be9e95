// Package lb is the gateway's connection scheduler (issue 8): for a
// service — a virtual address and port on the cluster subnet — it chooses
// which member node receives each new connection from outside, and it
// notices members that died or stopped consuming.
//
// It is sans-I/O, like the TCP engine: it reads no clock (time comes in as
// the now argument of Tick, a monotonic time.Duration as the stack's
// clock gives it), starts no goroutine, performs no I/O, and learns about
// a member's load only through the Load interface the gateway implements.
// A Service is not safe for concurrent use: the gateway serialises Join,
// Leave, Tick and Pick (one lock per service, or one goroutine). Pick and
// Tick allocate nothing; Join, Leave and a removal in Tick may (they
// rebuild the Maglev table).
//
// # Policies
//
//   - queue: the seed's idea ("implicit knowledge of the load on cluster
//     nodes from the circular queue pointers"). Both pointers of a node's
//     rings are visible to the gateway: head minus tail is what the node
//     has not consumed (Load.Occupancy), and the tail's progress is what
//     it consumed. Every Config.Interval the gateway calls Tick, which
//     takes one reading per member. A node's stack takes a connection's
//     handshake in at once, whatever its application is doing, and leaves
//     a request in the ring until the application reads it; so the
//     reading that matters is what the member drained (Drainer.Drained:
//     per ring, what it consumed of the bytes it held at the previous
//     reading), not all it consumed. From the readings Tick keeps four
//     things. The backlog: an EWMA (time constant Config.Smoothing) of
//     the occupancy, in requests (divided by the learned bytes a member
//     drains per request). The drain rate, sampled over intervals that
//     began with data waiting (time constant Config.RateSmoothing; an
//     idle member's relaxes ten times slower towards the others'). The
//     service time: the time between the connections the member finishes
//     while busy (Drainer.Ended; the gateway ends a flow's count when the
//     member sends its FIN), and how far the request in service has got.
//     And the time since the member last made progress (drained a request
//     that waited, or finished a connection) while it had work.
//
//     A new connection goes to the member with the shortest expected
//     delay: (requests ahead + 1) × its time per request, less what the
//     request in service has done. The requests ahead are the ring's
//     waiting requests plus the connections assigned since the reading,
//     or the gateway's count of the member's open connections if that
//     is more: the ring cannot show a request the member has taken and
//     is serving, the count cannot tell a fast member from a slow one.
//     The time per request is the measured service time (the drain rate
//     before any is measured), the member's own only if it is more than
//     1.5× away from the pool's mean. Dividing by a measured speed is
//     what the pointers give that a connection count cannot: a node four
//     times slower with the same backlog is four times further from
//     serving a new request (IPVS's sed needs configured weights for
//     this). A member is stopped if it has held data without draining
//     any for four of its request times (by the drain rate), or has had
//     work (an open connection) without progress (a request drained, a
//     connection finished) for twice its service time, and at least
//     10 ms either way: it comes after every working member until it
//     makes progress again.
//
//     Why smoothed, why the count, why the random choice: readings are
//     taken every millisecond or so, and between two readings a busy
//     gateway assigns many connections. Had Pick chosen the least-loaded
//     member of the last raw reading, every connection until the next
//     reading would go to that one member ("herding", the classic failure
//     of least-loaded scheduling on stale information, Mitzenmacher's
//     "The Power of Two Choices"). The connections assigned since the
//     reading count at once (half of them carry over a reading, because
//     a request lands about one RTT after its SYN), the gateway's own
//     count of open connections is exact and immediate, and members
//     whose expected delays are within Config.Slack (or a fifth of a
//     request time) of the best are treated as equal: the one with the
//     fewest open connections wins, then the lower delay, exact ties
//     from a random start.
//
//   - leastconn: IPVS's least-connection (wlc with weights): the member
//     with the fewest open connections (Load.Conns) per unit of weight;
//     equal ratios go to the higher weight, then round-robin.
//
//   - roundrobin: smooth weighted round robin (equal weights: A B C A B C).
//
//   - sed: shortest expected delay as queue computes it, but with the
//     requests ahead counted as open connections (Load.Conns) only; the
//     ring and the finishes still give the time per request and the
//     stall time. It is IPVS's sed with the weights measured instead of
//     configured. Not one of the four: it is there because the
//     simulation showed where queue's ring-only view loses (see Tuning).
//
//   - hash: Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4):
//     a lookup table of prime size M filled from each member's permutation
//     of the slots, indexed by the flow hash. Each member owns ⌊M/N⌋ or
//     ⌈M/N⌉ slots, and when a member leaves only a small share of the
//     other members' slots change hands.
//
// # Membership and failure
//
// Join adds a member (or readmits one that left or was removed); Leave
// removes one (its listener closed, or the fabric saw its process die).
// Tick also removes a member that holds data and has not drained any
// for Config.StallTimeout (default 250 ms, so that with the reading
// interval a stopped node is out well within a second): from then on no
// new connection goes to it, Config.OnRemove tells the gateway (which
// resets the member's connections), and it stays out until the gateway
// calls Join again. Removal applies to every policy, so Tick must be
// called every Interval whatever the policy. A reading that comes more
// than half the stall timeout after the previous one judges no stall (the
// gateway was not looking: its loop was starved, and on a loaded machine
// this removed every member at once), and the stall clocks restart there.
//
// # Tuning
//
// The defaults (readings every 1 ms, backlog EWMA 1 ms, drain-rate EWMA
// 100 ms, slack 10 %) come from the simulation in bench/lb (`ultcp bench
// lb --simulate`); the rest (what counts as progress, the service time
// from finishes, the 1.5× band, the 10 ms floor of a stop) from the
// measured run through the gateway (docs/lb.md), where the ring showed
// what the model had not: handshakes consumed at once, closing flows
// whose last ACKs wait in the ring for the member's Grace, and drain-rate
// samples that read a single worker up to twice as fast as it is.
//
// The package must never choose a member that left or was removed, never
// block or allocate in Pick, and never trust a Load reading: negative
// occupancy counts as zero, a consumed counter that goes backwards is a
// new baseline.
package lb
