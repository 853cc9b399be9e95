// Package netlink configures network interfaces through rtnetlink (RFC 3549;
// rtnetlink(7)) on a raw NETLINK_ROUTE socket: look a link up, bring it up,
// set its MTU, give it an IPv4 address, route an IPv4 prefix through it, and
// delete it. The gateway uses it to set up its TUN device without running
// the `ip` command.
//
// Every call opens its own socket, sends one request with NLM_F_ACK and waits
// (at most Timeout) for the kernel's answer, so calls are independent and
// safe from any goroutine. A socket belongs to the network namespace of the
// thread that created it: a caller that switched its thread's namespace
// (unshare, setns) must keep that thread locked (runtime.LockOSThread) while
// it calls this package.
//
// Failures are *Error values that unwrap to the kernel's errno, so
// errors.Is(err, unix.EEXIST) (or os.ErrExist), unix.ENODEV and unix.EPERM
// work; the kernel's extended-ack text is kept in the message.
//
// This package must never choose a namespace, run a command, or retry a
// request behind the caller's back: it does exactly the one change asked for.
package netlink

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Timeout bounds how long a call waits for the kernel's answer.
const Timeout = 5 * time.Second

// Error is a request the kernel refused, or one that could not be made.
type Error struct {
	Op   string // "LinkUp", "SetMTU", "AddAddr", ...
	What string // the link, address or route it was about
	Err  error  // a unix.Errno from the kernel, or what went wrong locally
	Msg  string // the kernel's extended-ack message, if it gave one
}

func (e *Error) Error() string {
	s := "netlink: " + e.Op + " " + e.What + ": " + e.Err.Error()
	if e.Msg != "" {
		s += " (kernel: " + e.Msg + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Link is what LinkByName reports about a network interface.
type Link struct {
	Index int
	Name  string
	MTU   int
	Flags uint32 // IFF_UP, IFF_RUNNING, ... (unix.IFF_*)
	Stats LinkStats
}

// Up reports whether the link is administratively up.
func (l Link) Up() bool { return l.Flags&unix.IFF_UP != 0 }

// LinkStats are the link's counters (struct rtnl_link_stats64). For a TUN
// device, Rx counts packets user space wrote (the kernel received them), Tx
// packets the kernel queued for user space to read.
type LinkStats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxErrors, TxErrors   uint64
	RxDropped, TxDropped uint64
}

// LinkByName returns the link called name (RTM_GETLINK). No such link:
// an error matching unix.ENODEV.
func LinkByName(name string) (Link, error) {
	const op = "LinkByName"
	if err := checkName(op, name); err != nil {
		return Link{}, err
	}
	req := newRequest(unix.RTM_GETLINK, 0, make([]byte, unix.SizeofIfInfomsg))
	req.attrString(unix.IFLA_IFNAME, name)
	var l Link
	found := false
	err := roundTrip(op, name, req, func(h msgHeader, payload []byte) error {
		if h.Type != unix.RTM_NEWLINK {
			return nil
		}
		var err error
		l, err = parseLink(payload)
		found = err == nil
		return err
	})
	if err != nil {
		return Link{}, err
	}
	if !found {
		return Link{}, &Error{Op: op, What: name, Err: fmt.Errorf("%w: acknowledged without a link message", ErrMalformed)}
	}
	return l, nil
}

// LinkIndex returns the interface index of the link called name.
func LinkIndex(name string) (int, error) {
	l, err := LinkByName(name)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Op = "LinkIndex"
		}
		return 0, err
	}
	return l.Index, nil
}

// LinkUp sets the link administratively up (ip link set NAME up).
func LinkUp(name string) error {
	const op = "LinkUp"
	return setLink(op, name, unix.IFF_UP, unix.IFF_UP, nil)
}

// SetMTU sets the link's MTU (IFLA_MTU). The kernel bounds it by the
// device's minimum and maximum (for TUN: 68 to 65535) and says EINVAL.
func SetMTU(name string, mtu int) error {
	const op = "SetMTU"
	if mtu <= 0 || mtu > 1<<31-1 {
		return &Error{Op: op, What: name, Err: fmt.Errorf("MTU %d out of range: %w", mtu, unix.EINVAL)}
	}
	return setLink(op, name, 0, 0, func(r *request) { r.attrU32(unix.IFLA_MTU, uint32(mtu)) })
}

// setLink sends RTM_NEWLINK for an existing link: flags under the change
// mask, plus attributes.
func setLink(op, name string, flags, change uint32, attrs func(*request)) error {
	if err := checkName(op, name); err != nil {
		return err
	}
	var ifi [unix.SizeofIfInfomsg]byte
	native.PutUint32(ifi[8:], flags)
	native.PutUint32(ifi[12:], change)
	req := newRequest(unix.RTM_NEWLINK, 0, ifi[:])
	req.attrString(unix.IFLA_IFNAME, name)
	if attrs != nil {
		attrs(req)
	}
	return roundTrip(op, name, req, nil)
}

// DelLink deletes the link called name (RTM_DELLINK).
func DelLink(name string) error {
	const op = "DelLink"
	if err := checkName(op, name); err != nil {
		return err
	}
	req := newRequest(unix.RTM_DELLINK, 0, make([]byte, unix.SizeofIfInfomsg))
	req.attrString(unix.IFLA_IFNAME, name)
	return roundTrip(op, name, req, nil)
}

// AddAddr gives the link called name the IPv4 address p.Addr() with p's
// prefix length (ip addr add P dev NAME); the kernel adds the prefix's
// route through the link when the link is up. An address the link already
// has: an error matching unix.EEXIST.
func AddAddr(name string, p netip.Prefix) error {
	const op = "AddAddr"
	what := name + " " + p.String()
	if !p.IsValid() || !p.Addr().Is4() {
		return &Error{Op: op, What: what, Err: fmt.Errorf("not an IPv4 prefix: %w", unix.EINVAL)}
	}
	index, err := LinkIndex(name)
	if err != nil {
		return relabel(err, op, what)
	}
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	var ifa [unix.SizeofIfAddrmsg]byte
	ifa[0] = unix.AF_INET
	ifa[1] = byte(p.Bits())
	ifa[3] = unix.RT_SCOPE_UNIVERSE
	native.PutUint32(ifa[4:], uint32(index))
	req := newRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, ifa[:])
	a := p.Addr().As4()
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's on a
	// point-to-point link, and the same as IFA_LOCAL otherwise.
	req.attr(unix.IFA_LOCAL, a[:])
	req.attr(unix.IFA_ADDRESS, a[:])
	return roundTrip(op, what, req, nil)
}

// AddRoute routes the IPv4 prefix dst through the link called dev, on-link
// (ip route add DST dev DEV) in the main table. dst must be masked (no host
// bits, as netip.Prefix.Masked gives). A route that exists: unix.EEXIST; a
// link that is down: unix.ENETDOWN.
func AddRoute(dst netip.Prefix, dev string) error {
	const op = "AddRoute"
	what := dst.String() + " dev " + dev
	if !dst.IsValid() || !dst.Addr().Is4() {
		return &Error{Op: op, What: what, Err: fmt.Errorf("not an IPv4 prefix: %w", unix.EINVAL)}
	}
	if dst.Masked() != dst {
		return &Error{Op: op, What: what, Err: fmt.Errorf("host bits set (want %s): %w", dst.Masked(), unix.EINVAL)}
	}
	index, err := LinkIndex(dev)
	if err != nil {
		return relabel(err, op, what)
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, flags (u32).
	var rtm [unix.SizeofRtMsg]byte
	rtm[0] = unix.AF_INET
	rtm[1] = byte(dst.Bits())
	rtm[4] = unix.RT_TABLE_MAIN
	rtm[5] = unix.RTPROT_STATIC
	rtm[6] = unix.RT_SCOPE_LINK
	rtm[7] = unix.RTN_UNICAST
	req := newRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, rtm[:])
	if dst.Bits() > 0 {
		a := dst.Addr().As4()
		req.attr(unix.RTA_DST, a[:])
	}
	req.attrU32(unix.RTA_OIF, uint32(index))
	return roundTrip(op, what, req, nil)
}

// relabel makes an error from a helper call name the caller's operation.
func relabel(err error, op, what string) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Op: op, What: what, Err: e.Err, Msg: e.Msg}
	}
	return &Error{Op: op, What: what, Err: err}
}

// checkName rejects names the kernel cannot hold (IFNAMSIZ includes the
// NUL) before asking it.
func checkName(op, name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return &Error{Op: op, What: fmt.Sprintf("%q", name), Err: fmt.Errorf("interface name must be 1 to %d bytes: %w", unix.IFNAMSIZ-1, unix.EINVAL)}
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 || name[i] == '/' || name[i] == ':' || name[i] == ' ' {
			return &Error{Op: op, What: fmt.Sprintf("%q", name), Err: fmt.Errorf("interface name holds %q: %w", name[i], unix.EINVAL)}
		}
	}
	return nil
}

// roundTrip sends req on a fresh socket and reads answers until the kernel
// acknowledges it (or refuses it, or Timeout passes). Every other message
// answering req goes to fn.
func roundTrip(op, what string, req *request, fn func(msgHeader, []byte) error) error {
	fail := func(err error) error { return &Error{Op: op, What: what, Err: err} }
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fail(fmt.Errorf("socket: %w", err))
	}
	defer unix.Close(fd)
	// Best effort: extended acks carry the kernel's reason in words, and a
	// capped ack does not echo our request back.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval(Timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail(fmt.Errorf("SO_RCVTIMEO: %w", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(fmt.Errorf("bind: %w", err))
	}
	const seq = 1 // one request per socket
	if err := unix.Sendto(fd, req.finish(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(fmt.Errorf("send: %w", err))
	}
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		n, _, flags, from, err := unix.Recvmsg(fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("receive: %w", err))
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		if flags&unix.MSG_TRUNC != 0 {
			return fail(fmt.Errorf("%w: answer longer than %d bytes", ErrMalformed, len(buf)))
		}
		done, res, err := handleAnswer(buf[:n], seq, fn)
		if err != nil {
			return fail(err)
		}
		if done {
			if res.Errno != 0 {
				return &Error{Op: op, What: what, Err: res.Errno, Msg: res.Msg}
			}
			return nil
		}
	}
	return fail(fmt.Errorf("no answer from the kernel within %v: %w", Timeout, unix.ETIMEDOUT))
}

// handleAnswer parses one datagram from the kernel. done is true once the
// datagram held the acknowledgement (or refusal) of request seq; messages
// about other requests are skipped.
func handleAnswer(b []byte, seq uint32, fn func(msgHeader, []byte) error) (done bool, res ackResult, err error) {
	for len(b) > 0 {
		h, payload, rest, err := splitMessage(b)
		if err != nil {
			return false, ackResult{}, err
		}
		b = rest
		if h.Seq != seq {
			continue
		}
		switch h.Type {
		case unix.NLMSG_ERROR:
			res, err := parseAck(payload, h.Flags)
			if err != nil {
				return false, ackResult{}, err
			}
			return true, res, nil
		case unix.NLMSG_DONE, unix.NLMSG_NOOP:
		default:
			if fn != nil {
				if err := fn(h, payload); err != nil {
					return false, ackResult{}, err
				}
			}
		}
	}
	return false, ackResult{}, nil
}
