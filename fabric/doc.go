// Package fabric emulates the CLAN network of the seed: connection-oriented,
// lossless, in-order transfer of records between processes on one machine
// through circular queues in shared memory, with PIO (the sender copies into
// the queue) and DMA (the receiver pulls from the sender's buffer with
// process_vm_readv; for a record of 2 MiB or more the waiting sender
// pushes the end of it with process_vm_writev meanwhile, so that both
// CPUs copy: assist.go) transfers and tripwire notifications.
//
// A fabric is a directory on tmpfs (default /dev/shm/ultcp/<name>). A node
// joins it with an IPv4 address: it binds a Unix socket named after the
// address there; the socket is both the registration (a live node answers
// on it, a dead node's socket refuses and is removed) and the rendezvous.
// On first contact between two nodes the dialler creates one peer segment
// with memfd_create, seals it against shrinking and growing, and hands the
// descriptor over the socket (SCM_RIGHTS); each side also hands over its
// node doorbell page the same way. There is no segment file: the memory
// lives exactly as long as a process maps it. After first contact, opening
// a connection takes a ring pair from the dialler's half of the segment's
// slab and posts one message on the control ring: no system call unless the
// peer's event loop sleeps.
//
// See docs/fabric.md for the memory layout, the ring protocol, the
// notification protocol and the measurements behind the defaults.
//
// The package must never trust shared memory: every index, length and
// descriptor read from it is loaded once into a local, checked, and a bad
// value fails the one connection concerned (ErrCorrupt, which unwraps to
// ECONNRESET). It never panics or touches memory outside its mappings
// because of what a peer wrote, and a peer cannot resize the memory under
// it (the seals). It keeps no goroutine per connection and wakes no one
// when nothing happens: per node one goroutine serves control messages
// (asleep on the node's doorbell futex) and one accepts first contacts on
// the socket, and per peer one goroutine sits in the netpoller on a pidfd
// to notice the peer's death. Accept reads the control rings itself while
// it spins, so that a connection arriving then costs no wake-up of that
// goroutine's thread. A DMA sender that assists reads only its own
// buffer, and only within what the receiver's offer covers.
//
// A goroutine blocked in Peek, Recv, Reserve, Send or SendDMA spins for
// Config.SpinBudget and then sleeps in FUTEX_WAIT, holding its OS thread;
// a program with many connections serves them from one event loop
// (Conn.SetWatch, Conn.PeekNoWait, Node.Wait) instead.
package fabric
