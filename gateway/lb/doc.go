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
//     rings are visible to the gateway: head minus tail is the backlog the
//     node has not consumed (Load.Occupancy), and the tail's progress is
//     how fast the node consumes (Load.Consumed). Every Config.Interval the
//     gateway calls Tick, which takes one reading per member and keeps two
//     exponentially weighted moving averages: the backlog (time constant
//     Config.Smoothing) and the drain rate, sampled only over intervals in
//     which the member held data at both readings, so that an idle member
//     is not mistaken for a slow one (time constant Config.RateSmoothing).
//     A new connection goes to the member with the shortest expected
//     delay: (smoothed backlog + bytes of the connections assigned since
//     the last reading + the new connection's bytes) / drain rate, plus the
//     time the member has held data without consuming any. Dividing by
//     the drain rate is what the pointers give that a connection count
//     cannot: a node four times slower with the same backlog is four
//     times further from serving a new request (IPVS's sed policy needs
//     configured weights for this; here the rate is measured). The bytes a
//     new connection brings are learned per service from the readings
//     (bytes that arrived / connections assigned).
//
//     Why smoothed, why the penalty, why the random choice: readings are
//     taken every millisecond or so, and between two readings a busy
//     gateway assigns many connections. Had Pick chosen the least-loaded
//     member of the last raw reading, every connection until the next
//     reading would go to that one member ("herding", the classic failure
//     of least-loaded scheduling on stale information, Mitzenmacher's
//     "The Power of Two Choices"): it would be flooded while others sat
//     idle, and the next reading would swing everything elsewhere. Three
//     things prevent it. The penalty makes each assignment visible at
//     once, as if its bytes had already arrived (half of it carries over
//     each reading, because a request lands about one RTT after its SYN). The EWMA keeps a single
//     reading (a burst that is consumed a microsecond later) from
//     swinging the choice. And members whose expected delays are within
//     Config.Slack of the best are treated as equal: two of them are drawn
//     at random and the one with fewer open connections wins (then the
//     lower delay), so estimation errors spread connections instead of
//     concentrating them. The connection count only breaks these ties:
//     in the simulation it brought queue to within a few per cent of
//     leastconn with equal members, where the ring alone trailed by 5-10 %.
//
//   - leastconn: IPVS's least-connection (wlc with weights): the member
//     with the fewest open connections (Load.Conns) per unit of weight;
//     equal ratios go to the higher weight, then round-robin.
//
//   - roundrobin: smooth weighted round robin (equal weights: A B C A B C).
//
//   - sed: shortest expected delay as queue computes it, but with the
//     backlog counted as open connections (Load.Conns) × the bytes per
//     connection, so that requests being served count as well as those
//     waiting in the ring; the ring still gives the drain rate and the
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
// Tick also removes a member that holds data and has not consumed any
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
// lb --simulate`): shorter intervals did not help there (the drain-rate
// samples get noisier), a longer backlog EWMA made the tail worse, and
// a rate EWMA of 20 ms let sampling noise between equal members show in
// the tail. In that model, where every connection carries one request of
// uniform cost and the connection count is exact, queue beats roundrobin
// and hash by far and leastconn by about half at p99 with a 4× slower
// member, but stays 1-5 % behind leastconn at p99 with equal or stalling
// members (differences of the size of the seed-to-seed noise): the ring
// shows the requests waiting, not those in service, and only as of the
// last reading, and a stall hurts the requests already queued at the
// member whatever the policy.
//
// The package must never choose a member that left or was removed, never
// block or allocate in Pick, and never trust a Load reading: negative
// occupancy counts as zero, a consumed counter that goes backwards is a
// new baseline.
package lb
