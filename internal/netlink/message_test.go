package netlink

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// The literal messages below are little endian, as on this project's hosts
// (amd64, arm64): netlink uses the host's byte order.
func skipBigEndian(t testing.TB) {
	if native.Uint16([]byte{1, 0}) != 1 {
		t.Skip("literal netlink messages here are little endian; this host is big endian")
	}
}

// An acknowledgement as the kernel sends it on a socket with
// NETLINK_CAP_ACK: NLMSG_ERROR (2), flags NLM_F_CAPPED, error 0, the echoed
// request header (RTM_NEWLINK, seq 1).
var literalAck = []byte{
	0x24, 0x00, 0x00, 0x00, // len 36
	0x02, 0x00, // NLMSG_ERROR
	0x00, 0x01, // NLM_F_CAPPED
	0x01, 0x00, 0x00, 0x00, // seq 1
	0x00, 0x00, 0x00, 0x00, // pid 0: the kernel
	0x00, 0x00, 0x00, 0x00, // error 0
	0x30, 0x00, 0x00, 0x00, 0x10, 0x00, 0x05, 0x00, // echoed: len 48, RTM_NEWLINK, REQUEST|ACK
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq 1, pid 0
}

// A refusal with an extended ack: EEXIST (-17), NLM_F_CAPPED|NLM_F_ACK_TLVS,
// NLMSGERR_ATTR_MSG "Address already assigned".
var literalEEXIST = []byte{
	0x40, 0x00, 0x00, 0x00, // len 64
	0x02, 0x00, // NLMSG_ERROR
	0x00, 0x03, // NLM_F_CAPPED|NLM_F_ACK_TLVS
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq 1, pid 0
	0xef, 0xff, 0xff, 0xff, // error -17
	0x28, 0x00, 0x00, 0x00, 0x14, 0x00, 0x05, 0x06, // echoed: len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x1c, 0x00, 0x01, 0x00, // attr len 28, NLMSGERR_ATTR_MSG
	'A', 'd', 'd', 'r', 'e', 's', 's', ' ', 'a', 'l', 'r', 'e', 'a', 'd', 'y', ' ',
	'a', 's', 's', 'i', 'g', 'n', 'e', 'd', // 24 bytes; no NUL, padding absent at the end
}

func TestHandleAnswerAcceptsAck(t *testing.T) {
	skipBigEndian(t)
	done, res, err := handleAnswer(literalAck, 1, nil)
	if err != nil || !done || res.Errno != 0 || res.Seq != 1 {
		t.Fatalf("handleAnswer = done %v, %+v, %v; want done, errno 0, seq 1", done, res, err)
	}
}

func TestHandleAnswerReadsErrnoAndExtendedAck(t *testing.T) {
	skipBigEndian(t)
	done, res, err := handleAnswer(literalEEXIST, 1, nil)
	if err != nil || !done {
		t.Fatalf("handleAnswer = done %v, %v; want done", done, err)
	}
	if res.Errno != unix.EEXIST || res.Msg != "Address already assigned" {
		t.Fatalf("got errno %v msg %q, want EEXIST %q", res.Errno, res.Msg, "Address already assigned")
	}
	e := &Error{Op: "AddAddr", What: "tun0 10.99.0.1/24", Err: res.Errno, Msg: res.Msg}
	if !errors.Is(e, unix.EEXIST) {
		t.Errorf("errors.Is(%v, EEXIST) is false", e)
	}
	const want = "netlink: AddAddr tun0 10.99.0.1/24: file exists (kernel: Address already assigned)"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestHandleAnswerSkipsOtherSequenceNumbers(t *testing.T) {
	skipBigEndian(t)
	done, _, err := handleAnswer(literalAck, 2, nil)
	if err != nil || done {
		t.Fatalf("answer to seq 1 taken for seq 2: done %v, err %v", done, err)
	}
}

// A link message (RTM_NEWLINK) as RTM_GETLINK answers: ifinfomsg for index
// 7, flags UP|RUNNING|NOARP|POINTOPOINT, then IFLA_IFNAME "tun0" and IFLA_MTU
// 1500, then the ack.
var literalLink = []byte{
	0x34, 0x00, 0x00, 0x00, // len 52 (16 + 16 + 12 + 8)
	0x10, 0x00, 0x00, 0x00, // RTM_NEWLINK, no flags
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq 1, pid 0
	0x00, 0x00, 0xfe, 0xff, // family 0, pad, type ARPHRD_NONE (0xfffe)
	0x07, 0x00, 0x00, 0x00, // index 7
	0xd1, 0x00, 0x01, 0x00, // flags 0x100d1: UP|POINTOPOINT|RUNNING|NOARP|LOWER_UP
	0x00, 0x00, 0x00, 0x00, // change
	0x09, 0x00, 0x03, 0x00, 't', 'u', 'n', '0', 0x00, 0x00, 0x00, 0x00, // IFLA_IFNAME, padded
	0x08, 0x00, 0x04, 0x00, 0xdc, 0x05, 0x00, 0x00, // IFLA_MTU 1500
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 8 bytes after the message: padding the parser must not read
}

func TestParseLinkReadsIndexNameMTUFlags(t *testing.T) {
	skipBigEndian(t)
	h, payload, _, err := splitMessage(literalLink)
	if err != nil || h.Type != unix.RTM_NEWLINK {
		t.Fatalf("splitMessage: type %d, %v", h.Type, err)
	}
	l, err := parseLink(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := Link{Index: 7, Name: "tun0", MTU: 1500, Flags: 0x100d1}
	if l != want {
		t.Fatalf("parseLink = %+v, want %+v", l, want)
	}
	if !l.Up() {
		t.Errorf("link with IFF_UP set is not Up()")
	}
}

func TestRequestEncodesSetMTU(t *testing.T) {
	skipBigEndian(t)
	req := newRequest(unix.RTM_NEWLINK, 0, make([]byte, unix.SizeofIfInfomsg))
	req.attrString(unix.IFLA_IFNAME, "tun0")
	req.attrU32(unix.IFLA_MTU, 1500)
	want := []byte{
		0x34, 0x00, 0x00, 0x00, 0x10, 0x00, 0x05, 0x00, // len 52, RTM_NEWLINK, REQUEST|ACK
		0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq 9, pid 0
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg
		0x09, 0x00, 0x03, 0x00, 't', 'u', 'n', '0', 0x00, 0x00, 0x00, 0x00, // IFLA_IFNAME
		0x08, 0x00, 0x04, 0x00, 0xdc, 0x05, 0x00, 0x00, // IFLA_MTU
	}
	if got := req.finish(9); !bytes.Equal(got, want) {
		t.Fatalf("request\n% x\nwant\n% x", got, want)
	}
}

func TestSplitMessageRejectsBadLengths(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"15 bytes", make([]byte, 15)},
		{"length 15 < header", []byte{0x0f, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"length past the end", []byte{0x14, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"length 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skipBigEndian(t)
			if _, _, _, err := splitMessage(tc.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("splitMessage: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParseAckRejectsBadErrors(t *testing.T) {
	skipBigEndian(t)
	for _, tc := range []struct {
		name    string
		payload []byte
		flags   uint16
	}{
		{"shorter than errno and header", make([]byte, 19), unix.NLM_F_CAPPED},
		{"positive error code", append([]byte{1, 0, 0, 0}, make([]byte, 16)...), unix.NLM_F_CAPPED},
		{"echoed request longer than the message", append([]byte{0xfe, 0xff, 0xff, 0xff, 0x40, 0, 0, 0}, make([]byte, 12)...), 0},
		{"extended ack attribute past the end", append(append([]byte{0xfe, 0xff, 0xff, 0xff}, make([]byte, 16)...), 0x20, 0, 1, 0, 'x'), unix.NLM_F_CAPPED | unix.NLM_F_ACK_TLVS},
	} {
		if _, err := parseAck(tc.payload, tc.flags); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: parseAck: %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestParseLinkRejectsShortMTU(t *testing.T) {
	skipBigEndian(t)
	payload := append(make([]byte, unix.SizeofIfInfomsg), 0x06, 0x00, 0x04, 0x00, 0xdc, 0x05, 0, 0)
	if _, err := parseLink(payload); !errors.Is(err, ErrMalformed) {
		t.Fatalf("parseLink with a 2-byte IFLA_MTU: %v, want ErrMalformed", err)
	}
}

// FuzzHandleAnswer: whatever the kernel (or a corrupted buffer) sends, the
// parser returns a result or an error wrapping ErrMalformed; never a panic.
func FuzzHandleAnswer(f *testing.F) {
	f.Add(literalAck)
	f.Add(literalEEXIST)
	f.Add(literalLink)
	f.Add(append(append([]byte(nil), literalLink[:52]...), literalAck...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := handleAnswer(b, 1, func(h msgHeader, payload []byte) error {
			if h.Type == unix.RTM_NEWLINK {
				_, err := parseLink(payload)
				return err
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	})
}
