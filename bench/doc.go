// Package bench is the NetPIPE-style comparison behind `ultcp bench`: the
// same ping-pong sweep (message sizes doubling from 1 byte to 8 MiB with
// NetPIPE's ±3-byte perturbations) and a TCP_CRR-like connection-rate test,
// run over ultcp and over what a user would use instead (kernel TCP, Unix
// sockets, gVisor's netstack, NetPIPE's own NPtcp), each between two
// separate processes, in one run.
//
// Every transport runs as a pair of child processes: a server that answers
// and a client that measures (internal/proc re-executes the program with a
// role; gVisor and NPtcp are external binaries speaking the same or their
// own protocol). The orchestrating process only hands out commands and
// collects results, so its own work never lands inside a measurement.
// Points are measured in interleaved order (every transport at one size
// before the next size) so that drift of a shared machine hits all alike,
// and every point reports minimum and median, never a mean: a process
// descheduled by the host stalls for milliseconds and would dominate it.
//
// The package must never assert timing (tests check structure only), never
// leave a process or a fabric directory behind (children die with their
// parent; directories are removed on every exit path), and never pull a
// heavy dependency into the core module: gVisor lives in the separate
// module bench/gvisor, built at run time into a cache directory.
package bench
