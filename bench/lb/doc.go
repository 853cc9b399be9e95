// Package lb is the machinery of `ultcp bench lb` (issue 8, Build 5): how
// the gateway's load-balancing policies (gateway/lb) compare when one
// backend of a pool is slowed or stalls.
//
//   - Backend: a small HTTP/1.1 service whose per-request cost is a
//     configured duration, slept (the measured run's default) or spun on
//     the CPU, with a slowdown factor and periodic stalls. It serves any net.Listener: an ultcp Stack's listener (a
//     node behind the gateway) or kernel TCP. Its workers read a request
//     only when they can serve it, so requests that wait stay in the
//     transport (for ultcp, in the fabric ring, where the gateway's queue
//     policy sees them).
//   - LoadGen: a Go load generator over kernel TCP, a fresh connection
//     per request, at fixed concurrency (closed loop) or at a mean rate
//     (open loop of seeded Poisson arrivals, latency counted from each
//     request's arrival so that a stalled server is not hidden by the
//     generator waiting for it, and the requests in flight at the end
//     waited for),
//     recording the latency and, apart, the connect time (the gateway's
//     and the network's share) into Histograms.
//   - LoadReport: a LoadResult as JSON (the histogram's non-empty
//     buckets), for the measured run of `ultcp bench lb`, whose load
//     generator runs as a process of its own inside the ext network
//     namespace (cmd/ultcp/benchlbrun.go) and prints its report.
//   - Results: {"runs": [{"scenario", "policy", "rps", "p50_ms", "p99_ms",
//     "p999_ms"}]} as --json writes it, a table, the targets, and
//     a plot of the latency distributions (WriteCDFSVG).
//   - Simulate: an in-process discrete-event model of N backends driven
//     by the real scheduler (gateway/lb) on a fake clock. It exists to
//     check and tune the policies before the gateway does. It is a model,
//     not the Must-show run: service times are drawn from a distribution
//     (half fixed, half exponential), the network is a constant RTT, every
//     connection carries one request, and the gateway's counters (ring
//     occupancy, consumed bytes, open connections) are exact. Options
//     bring it closer to this machine: Cores makes the backends share a
//     few CPUs (spinning backends on 2 cores do), Grace lets a node's
//     stack take an unread request out of its ring (ultcp does after
//     Config.Grace). What it
//     says about the policies holds for that model only; the measured run
//     through the gateway is what counts. Besides the three
//     scenarios it has a fourth, dead (backend 0 stops for good), which
//     shows how soon each policy stops sending to a stopped member and
//     when the scheduler removes it.
//
// The package must never assert timing in its tests (they check
// structure, and the simulation's results, which are deterministic), and
// every run is bounded in time: the load generator stops at its
// deadline, the backend's stalls and spins end, the simulation stops at
// its simulated duration.
package lb
