package wire

// Cross-checks against an independent decoder and encoder, gopacket
// (tests only): what this package encodes, gopacket must decode to the
// same fields with valid checksums; what gopacket serializes, this package
// must parse to the same fields.

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// frame is one packet described by this package's header values.
type frame struct {
	name    string
	eth     EthernetHeader
	ip      IPv4Header
	tcp     *TCPHeader
	udp     *UDPHeader
	icmp    *ICMPv4Header
	arp     *ARP
	payload []byte
}

// encode builds the frame with this package's encoders, checksums filled,
// padded to the Ethernet minimum.
func (f *frame) encode(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 1600)
	n, err := f.eth.Encode(b)
	if err != nil {
		t.Fatalf("%s: ethernet: %v", f.name, err)
	}
	if f.arp != nil {
		m, err := f.arp.Encode(b[n:])
		if err != nil {
			t.Fatalf("%s: arp: %v", f.name, err)
		}
		return padFrame(b[:n+m])
	}
	ipAt := n
	n += IPv4HeaderLen
	l4 := n
	switch {
	case f.tcp != nil:
		m, err := f.tcp.Encode(b[n:])
		if err != nil {
			t.Fatalf("%s: tcp: %v", f.name, err)
		}
		n += m
	case f.udp != nil:
		f.udp.PayloadLen = uint16(len(f.payload))
		m, err := f.udp.Encode(b[n:])
		if err != nil {
			t.Fatalf("%s: udp: %v", f.name, err)
		}
		n += m
	case f.icmp != nil:
		m, err := f.icmp.Encode(b[n:])
		if err != nil {
			t.Fatalf("%s: icmp: %v", f.name, err)
		}
		n += m
	}
	hdr := b[l4:n]
	n += copy(b[n:], f.payload)
	switch {
	case f.tcp != nil:
		SetTCPChecksum(f.ip.Src, f.ip.Dst, hdr, f.payload)
		f.tcp.Checksum = binary.BigEndian.Uint16(hdr[16:])
	case f.udp != nil:
		SetUDPChecksum(f.ip.Src, f.ip.Dst, hdr, f.payload)
		f.udp.Checksum = binary.BigEndian.Uint16(hdr[6:])
	case f.icmp != nil:
		SetICMPv4Checksum(hdr, f.payload)
		f.icmp.Checksum = binary.BigEndian.Uint16(hdr[2:])
	}
	f.ip.PayloadLen = uint16(n - l4)
	if _, err := f.ip.Encode(b[ipAt:]); err != nil {
		t.Fatalf("%s: ipv4: %v", f.name, err)
	}
	return padFrame(b[:n])
}

func padFrame(b []byte) []byte {
	for len(b) < EthernetMinFrame {
		b = append(b, 0)
	}
	return b
}

func gpFlags(tc *layers.TCP) TCPFlags {
	var f TCPFlags
	for _, x := range []struct {
		on   bool
		flag TCPFlags
	}{{tc.FIN, FlagFIN}, {tc.SYN, FlagSYN}, {tc.RST, FlagRST}, {tc.PSH, FlagPSH},
		{tc.ACK, FlagACK}, {tc.URG, FlagURG}, {tc.ECE, FlagECE}, {tc.CWR, FlagCWR}} {
		if x.on {
			f |= x.flag
		}
	}
	return f
}

// gpOptions interprets gopacket's raw option list the way RFC 7323 and
// RFC 2018 define the options, independently of this package's parser.
func gpOptions(t *testing.T, tc *layers.TCP) TCPOptions {
	t.Helper()
	var o TCPOptions
	for _, opt := range tc.Options {
		d := opt.OptionData
		switch opt.OptionType {
		case layers.TCPOptionKindMSS:
			o.MSS = binary.BigEndian.Uint16(d)
		case layers.TCPOptionKindWindowScale:
			o.HasWScale, o.WScale = true, d[0]
		case layers.TCPOptionKindSACKPermitted:
			o.SACKPermitted = true
		case layers.TCPOptionKindSACK:
			o.NumSACK = uint8(len(d) / 8)
			o.SACK = [MaxSACKBlocks]SACKBlock{}
			for i := range int(o.NumSACK) {
				o.SACK[i] = SACKBlock{binary.BigEndian.Uint32(d[8*i:]), binary.BigEndian.Uint32(d[8*i+4:])}
			}
		case layers.TCPOptionKindTimestamps:
			o.HasTimestamp = true
			o.TSVal, o.TSEcr = binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:])
		}
	}
	return o
}

// checkWithGopacket decodes b with gopacket and compares every field with f.
func checkWithGopacket(t *testing.T, f *frame, b []byte) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	// gopacket goes on to decode application layers by port (DNS on 53,
	// VXLAN on 4789, ...) and may fail there on our random payloads; only
	// the layers up to the transport must decode.
	layer := func(lt gopacket.LayerType) gopacket.Layer {
		l := p.Layer(lt)
		if l == nil {
			msg := "missing"
			if e := p.ErrorLayer(); e != nil {
				msg = e.Error().Error()
			}
			t.Fatalf("%s: gopacket did not decode %v: %s", f.name, lt, msg)
		}
		return l
	}
	eth := layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if MAC(eth.DstMAC) != f.eth.Dst || MAC(eth.SrcMAC) != f.eth.Src || uint16(eth.EthernetType) != f.eth.EtherType {
		t.Fatalf("%s: gopacket ethernet %v %v %v", f.name, eth.DstMAC, eth.SrcMAC, eth.EthernetType)
	}
	if f.arp != nil {
		a := layer(layers.LayerTypeARP).(*layers.ARP)
		got := ARP{Op: a.Operation, SenderMAC: MAC(a.SourceHwAddress), SenderIP: IPv4Addr(a.SourceProtAddress),
			TargetMAC: MAC(a.DstHwAddress), TargetIP: IPv4Addr(a.DstProtAddress)}
		if got != *f.arp || a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 {
			t.Fatalf("%s: gopacket arp %+v, want %+v", f.name, got, *f.arp)
		}
		return
	}
	ip := layer(layers.LayerTypeIPv4).(*layers.IPv4)
	got := IPv4Header{TOS: ip.TOS, ID: ip.Id, DontFrag: ip.Flags&layers.IPv4DontFragment != 0,
		MoreFrags: ip.Flags&layers.IPv4MoreFragments != 0, FragOffset: ip.FragOffset, TTL: ip.TTL,
		Protocol: uint8(ip.Protocol), Src: IPv4Addr(ip.SrcIP.To4()), Dst: IPv4Addr(ip.DstIP.To4()),
		PayloadLen: ip.Length - 20}
	if ip.Version != 4 || ip.IHL != 5 || got != f.ip {
		t.Fatalf("%s: gopacket ipv4 %+v, want %+v", f.name, got, f.ip)
	}
	if _, v := ip.VerifyChecksum(); !v.Valid {
		t.Fatalf("%s: gopacket says the IPv4 checksum is wrong", f.name)
	}
	switch {
	case f.tcp != nil:
		tc := layer(layers.LayerTypeTCP).(*layers.TCP)
		got := TCPHeader{SrcPort: uint16(tc.SrcPort), DstPort: uint16(tc.DstPort), Seq: tc.Seq, Ack: tc.Ack,
			Flags: gpFlags(tc), Window: tc.Window, Checksum: tc.Checksum, Urgent: tc.Urgent, Options: gpOptions(t, tc)}
		if got != *f.tcp || int(tc.DataOffset)*4 != f.tcp.EncodedLen() {
			t.Fatalf("%s: gopacket tcp\n %+v\nwant %+v", f.name, got, *f.tcp)
		}
		tc.SetNetworkLayerForChecksum(ip)
		if _, v := tc.VerifyChecksum(); !v.Valid {
			t.Fatalf("%s: gopacket says the TCP checksum is wrong", f.name)
		}
		if string(tc.Payload) != string(f.payload) {
			t.Fatalf("%s: gopacket tcp payload % x, want % x", f.name, tc.Payload, f.payload)
		}
	case f.udp != nil:
		u := layer(layers.LayerTypeUDP).(*layers.UDP)
		got := UDPHeader{SrcPort: uint16(u.SrcPort), DstPort: uint16(u.DstPort), Checksum: u.Checksum, PayloadLen: u.Length - 8}
		if got != *f.udp || string(u.Payload) != string(f.payload) {
			t.Fatalf("%s: gopacket udp %+v, want %+v", f.name, got, *f.udp)
		}
		u.SetNetworkLayerForChecksum(ip)
		if _, v := u.VerifyChecksum(); !v.Valid {
			t.Fatalf("%s: gopacket says the UDP checksum is wrong", f.name)
		}
	case f.icmp != nil:
		ic := layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		got := ICMPv4Header{Type: ic.TypeCode.Type(), Code: ic.TypeCode.Code(), Checksum: ic.Checksum,
			Rest: uint32(ic.Id)<<16 | uint32(ic.Seq)}
		if got != *f.icmp || string(ic.Payload) != string(f.payload) {
			t.Fatalf("%s: gopacket icmp %+v, want %+v", f.name, got, *f.icmp)
		}
		if _, v := ic.VerifyChecksum(); !v.Valid {
			t.Fatalf("%s: gopacket says the ICMP checksum is wrong", f.name)
		}
	}
}

// checkWithOurs parses b with this package and compares with f.
func checkWithOurs(t *testing.T, f *frame, b []byte) {
	t.Helper()
	eh, rest, err := ParseEthernet(b)
	if err != nil || eh != f.eth {
		t.Fatalf("%s: ethernet %+v, %v; want %+v", f.name, eh, err, f.eth)
	}
	if f.arp != nil {
		a, err := ParseARP(rest)
		if err != nil || a != *f.arp {
			t.Fatalf("%s: arp %+v, %v; want %+v", f.name, a, err, *f.arp)
		}
		return
	}
	ih, l4, err := ParseIPv4(rest)
	if err != nil || ih != f.ip {
		t.Fatalf("%s: ipv4 %+v, %v; want %+v", f.name, ih, err, f.ip)
	}
	switch {
	case f.tcp != nil:
		th, payload, err := ParseTCP(l4)
		if err != nil || th != *f.tcp || string(payload) != string(f.payload) {
			t.Fatalf("%s: tcp %v\n %+v\nwant %+v", f.name, err, th, *f.tcp)
		}
		if err := VerifyTCPChecksum(ih.Src, ih.Dst, l4); err != nil {
			t.Fatalf("%s: tcp checksum: %v", f.name, err)
		}
	case f.udp != nil:
		uh, payload, err := ParseUDP(l4)
		if err != nil || uh != *f.udp || string(payload) != string(f.payload) {
			t.Fatalf("%s: udp %+v, %v; want %+v", f.name, uh, err, *f.udp)
		}
		if err := VerifyUDPChecksum(ih.Src, ih.Dst, l4); err != nil {
			t.Fatalf("%s: udp checksum: %v", f.name, err)
		}
	case f.icmp != nil:
		ch, payload, err := ParseICMPv4(l4)
		if err != nil || ch != *f.icmp || string(payload) != string(f.payload) {
			t.Fatalf("%s: icmp %+v, %v; want %+v", f.name, ch, err, *f.icmp)
		}
	}
}

var (
	macA = MAC{0x02, 0, 0, 0, 0, 0x01}
	macB = MAC{0x02, 0, 0, 0, 0, 0x02}
)

func frameTable() []frame {
	ip := func(proto uint8) IPv4Header {
		return IPv4Header{ID: 7, DontFrag: true, TTL: 64, Protocol: proto, Src: addrA, Dst: addrB}
	}
	ethIP := EthernetHeader{Dst: macB, Src: macA, EtherType: EtherTypeIPv4}
	synOpts := TCPOptions{MSS: 1460, HasWScale: true, WScale: 7, SACKPermitted: true, HasTimestamp: true, TSVal: 1, TSEcr: 0}
	sack := TCPOptions{HasTimestamp: true, TSVal: 9, TSEcr: 8, NumSACK: 3,
		SACK: [4]SACKBlock{{100, 200}, {300, 400}, {0xfffffff0, 0x10}}}
	sack4 := TCPOptions{NumSACK: 4, SACK: [4]SACKBlock{{1, 2}, {3, 4}, {5, 6}, {7, 8}}}
	return []frame{
		{name: "SYN with every SYN option", eth: ethIP, ip: ip(ProtoTCP),
			tcp: &TCPHeader{SrcPort: 40000, DstPort: 80, Seq: 0xfffffffe, Flags: FlagSYN, Window: 64240, Options: synOpts}},
		{name: "SYN-ACK MSS only", eth: ethIP, ip: ip(ProtoTCP),
			tcp: &TCPHeader{SrcPort: 80, DstPort: 40000, Seq: 1, Ack: 0xffffffff, Flags: FlagSYN | FlagACK, Window: 65535, Options: TCPOptions{MSS: 536}}},
		{name: "data with timestamps", eth: ethIP, ip: ip(ProtoTCP), payload: []byte("GET / HTTP/1.1\r\n\r\n"),
			tcp: &TCPHeader{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: FlagACK | FlagPSH, Window: 501, Options: TCPOptions{HasTimestamp: true, TSVal: 5, TSEcr: 6}}},
		{name: "ACK with 3 SACK blocks and timestamps", eth: ethIP, ip: ip(ProtoTCP),
			tcp: &TCPHeader{SrcPort: 1, DstPort: 2, Flags: FlagACK, Options: sack}},
		{name: "ACK with 4 SACK blocks", eth: ethIP, ip: ip(ProtoTCP),
			tcp: &TCPHeader{SrcPort: 1, DstPort: 2, Flags: FlagACK, Options: sack4}},
		{name: "urgent, ECN flags, odd payload", eth: ethIP, ip: IPv4Header{TOS: 0x03, ID: 0xffff, TTL: 1, Protocol: ProtoTCP, Src: addrB, Dst: addrA},
			payload: []byte{0xff, 0xff, 0xff},
			tcp:     &TCPHeader{SrcPort: 65535, DstPort: 0, Flags: FlagURG | FlagACK | FlagECE | FlagCWR | FlagFIN, Urgent: 3}},
		{name: "RST", eth: ethIP, ip: ip(ProtoTCP), tcp: &TCPHeader{SrcPort: 80, DstPort: 9, Seq: 77, Flags: FlagRST}},
		{name: "UDP", eth: ethIP, ip: ip(ProtoUDP), payload: []byte("abc"), udp: &UDPHeader{SrcPort: 5353, DstPort: 53}},
		{name: "UDP empty", eth: ethIP, ip: ip(ProtoUDP), udp: &UDPHeader{SrcPort: 1, DstPort: 2}},
		{name: "ICMP echo request", eth: ethIP, ip: ip(ProtoICMP), payload: []byte("ping"), icmp: ptr(ICMPv4EchoHeader(false, 0x1234, 1))},
		{name: "ICMP echo reply", eth: ethIP, ip: ip(ProtoICMP), payload: []byte("ping"), icmp: ptr(ICMPv4EchoHeader(true, 0x1234, 1))},
		{name: "ICMP fragmentation needed", eth: ethIP, ip: ip(ProtoICMP), payload: clone(fragNeeded[8:]),
			icmp: ptr(ICMPv4UnreachableHeader(ICMPv4FragmentationNeeded, 1280))},
		{name: "ICMP port unreachable", eth: ethIP, ip: ip(ProtoICMP), payload: clone(fragNeeded[8:]),
			icmp: ptr(ICMPv4UnreachableHeader(ICMPv4PortUnreachable, 0))},
		{name: "ARP request", eth: EthernetHeader{Dst: BroadcastMAC, Src: macA, EtherType: EtherTypeARP},
			arp: &ARP{Op: ARPRequest, SenderMAC: macA, SenderIP: addrA, TargetIP: addrB}},
		{name: "ARP reply", eth: EthernetHeader{Dst: macA, Src: macB, EtherType: EtherTypeARP},
			arp: &ARP{Op: ARPReply, SenderMAC: macB, SenderIP: addrB, TargetMAC: macA, TargetIP: addrA}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestGopacketDecodesOurEncodingTable(t *testing.T) {
	for _, f := range frameTable() {
		b := f.encode(t)
		checkWithGopacket(t, &f, b)
		checkWithOurs(t, &f, b)
	}
}

// randomTCPOptions draws an option set that fits in 40 bytes.
func randomTCPOptions(r *rand.Rand) TCPOptions {
	for {
		var o TCPOptions
		if r.IntN(2) == 0 {
			o.MSS = uint16(1 + r.IntN(65535))
		}
		if r.IntN(2) == 0 {
			o.HasWScale, o.WScale = true, uint8(r.IntN(15))
		}
		o.SACKPermitted = r.IntN(2) == 0
		if r.IntN(2) == 0 {
			o.HasTimestamp, o.TSVal, o.TSEcr = true, r.Uint32(), r.Uint32()
		}
		o.NumSACK = uint8(r.IntN(MaxSACKBlocks + 1))
		for i := range int(o.NumSACK) {
			o.SACK[i] = SACKBlock{r.Uint32(), r.Uint32()}
		}
		if o.EncodedLen() <= TCPMaxOptionsLen {
			return o
		}
	}
}

func randomAddr(r *rand.Rand) IPv4Addr {
	var a IPv4Addr
	binary.BigEndian.PutUint32(a[:], r.Uint32())
	return a
}

func randomPayload(r *rand.Rand) []byte {
	b := make([]byte, r.IntN(1400))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Property: for random field values, gopacket decodes what we encode to
// the same values (and we parse it back).
func TestGopacketDecodesOurEncodingRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	for i := range 3000 {
		f := frame{
			name: "random",
			eth:  EthernetHeader{Dst: macB, Src: macA, EtherType: EtherTypeIPv4},
			ip: IPv4Header{TOS: uint8(r.Uint32()), ID: uint16(r.Uint32()), DontFrag: r.IntN(2) == 0,
				TTL: uint8(r.Uint32()), Src: randomAddr(r), Dst: randomAddr(r)},
			payload: randomPayload(r),
		}
		switch i % 3 {
		case 0:
			f.ip.Protocol = ProtoTCP
			f.tcp = &TCPHeader{SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Seq: r.Uint32(), Ack: r.Uint32(),
				Flags: TCPFlags(r.Uint32()), Window: uint16(r.Uint32()), Urgent: uint16(r.Uint32()), Options: randomTCPOptions(r)}
		case 1:
			f.ip.Protocol = ProtoUDP
			f.udp = &UDPHeader{SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32())}
		case 2:
			f.ip.Protocol = ProtoICMP
			f.icmp = &ICMPv4Header{Type: uint8(r.IntN(256)), Code: uint8(r.IntN(256)), Rest: r.Uint32()}
		}
		b := f.encode(t)
		checkWithGopacket(t, &f, b)
		checkWithOurs(t, &f, b)
	}
}

// gpTCPOption builds one gopacket option.
func gpTCPOption(kind layers.TCPOptionKind, data []byte) layers.TCPOption {
	if kind <= 1 {
		return layers.TCPOption{OptionType: kind, OptionLength: 1}
	}
	return layers.TCPOption{OptionType: kind, OptionLength: uint8(2 + len(data)), OptionData: data}
}

// randomGopacketTCPOptions draws options in a random order, with NOPs and
// unknown kinds sprinkled in, and returns them with the value they mean.
func randomGopacketTCPOptions(r *rand.Rand) ([]layers.TCPOption, TCPOptions) {
	o := randomTCPOptions(r)
	var list []layers.TCPOption
	if o.MSS != 0 {
		list = append(list, gpTCPOption(layers.TCPOptionKindMSS, binary.BigEndian.AppendUint16(nil, o.MSS)))
	}
	if o.HasWScale {
		list = append(list, gpTCPOption(layers.TCPOptionKindWindowScale, []byte{o.WScale}))
	}
	if o.SACKPermitted {
		list = append(list, gpTCPOption(layers.TCPOptionKindSACKPermitted, nil))
	}
	if o.HasTimestamp {
		d := binary.BigEndian.AppendUint32(nil, o.TSVal)
		list = append(list, gpTCPOption(layers.TCPOptionKindTimestamps, binary.BigEndian.AppendUint32(d, o.TSEcr)))
	}
	if o.NumSACK > 0 {
		var d []byte
		for _, s := range o.SACK[:o.NumSACK] {
			d = binary.BigEndian.AppendUint32(d, s.Left)
			d = binary.BigEndian.AppendUint32(d, s.Right)
		}
		list = append(list, gpTCPOption(layers.TCPOptionKindSACK, d))
	}
	r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	size := o.EncodedLen() // an upper bound on the bytes the list takes
	for size < TCPMaxOptionsLen {
		if r.IntN(3) == 0 && size+4 <= TCPMaxOptionsLen {
			// An unknown kind (253, RFC 4727 experiment) with 2 data bytes.
			at := r.IntN(len(list) + 1)
			list = append(list[:at], append([]layers.TCPOption{gpTCPOption(253, []byte{0xab, 0xcd})}, list[at:]...)...)
			size += 4
		} else if r.IntN(2) == 0 {
			at := r.IntN(len(list) + 1)
			list = append(list[:at], append([]layers.TCPOption{gpTCPOption(layers.TCPOptionKindNop, nil)}, list[at:]...)...)
			size++
		} else {
			break
		}
	}
	return list, o
}

// Property: for random field values, what gopacket serializes (options in
// any order, NOPs, unknown options, IP options) we parse to the same values.
func TestOursParsesGopacketSerializationRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1981, 9293))
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for i := range 3000 {
		src, dst := randomAddr(r), randomAddr(r)
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: net.HardwareAddr(macB[:]), EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TOS: uint8(r.Uint32()), Id: uint16(r.Uint32()), TTL: uint8(r.Uint32()),
			SrcIP: net.IP(src[:]), DstIP: net.IP(dst[:])}
		if r.IntN(2) == 0 {
			ip.Flags = layers.IPv4DontFragment
		}
		if r.IntN(4) == 0 {
			// Router alert (RFC 2113), skipped by our parser.
			ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		payload := randomPayload(r)
		want := frame{name: "gopacket random", eth: EthernetHeader{Dst: macB, Src: macA, EtherType: EtherTypeIPv4}, payload: payload,
			ip: IPv4Header{TOS: ip.TOS, ID: ip.Id, DontFrag: ip.Flags != 0, TTL: ip.TTL, Src: src, Dst: dst}}
		var l4 gopacket.SerializableLayer
		switch i % 3 {
		case 0:
			ip.Protocol = layers.IPProtocolTCP
			list, o := randomGopacketTCPOptions(r)
			tc := &layers.TCP{SrcPort: layers.TCPPort(r.Uint32()), DstPort: layers.TCPPort(r.Uint32()), Seq: r.Uint32(), Ack: r.Uint32(),
				Window: uint16(r.Uint32()), Urgent: uint16(r.Uint32()), Options: list}
			fl := TCPFlags(r.Uint32())
			tc.FIN, tc.SYN, tc.RST, tc.PSH = fl.Has(FlagFIN), fl.Has(FlagSYN), fl.Has(FlagRST), fl.Has(FlagPSH)
			tc.ACK, tc.URG, tc.ECE, tc.CWR = fl.Has(FlagACK), fl.Has(FlagURG), fl.Has(FlagECE), fl.Has(FlagCWR)
			tc.SetNetworkLayerForChecksum(ip)
			want.tcp = &TCPHeader{SrcPort: uint16(tc.SrcPort), DstPort: uint16(tc.DstPort), Seq: tc.Seq, Ack: tc.Ack,
				Flags: fl, Window: tc.Window, Urgent: tc.Urgent, Options: o}
			l4 = tc
		case 1:
			ip.Protocol = layers.IPProtocolUDP
			u := &layers.UDP{SrcPort: layers.UDPPort(r.Uint32()), DstPort: layers.UDPPort(r.Uint32())}
			u.SetNetworkLayerForChecksum(ip)
			want.udp = &UDPHeader{SrcPort: uint16(u.SrcPort), DstPort: uint16(u.DstPort), PayloadLen: uint16(len(payload))}
			l4 = u
		case 2:
			ip.Protocol = layers.IPProtocolICMPv4
			ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(r.IntN(256)), uint8(r.IntN(256))),
				Id: uint16(r.Uint32()), Seq: uint16(r.Uint32())}
			want.icmp = &ICMPv4Header{Type: ic.TypeCode.Type(), Code: ic.TypeCode.Code(), Rest: uint32(ic.Id)<<16 | uint32(ic.Seq)}
			l4 = ic
		}
		want.ip.Protocol = uint8(ip.Protocol)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		// Checksums are only known after serializing.
		switch {
		case want.tcp != nil:
			want.tcp.Checksum = l4.(*layers.TCP).Checksum
		case want.udp != nil:
			want.udp.Checksum = l4.(*layers.UDP).Checksum
		case want.icmp != nil:
			want.icmp.Checksum = l4.(*layers.ICMPv4).Checksum
		}
		want.ip.PayloadLen = ip.Length - uint16(ip.IHL)*4
		checkWithOurs(t, &want, buf.Bytes())
	}
}

func TestOursParsesGopacketARP(t *testing.T) {
	r := rand.New(rand.NewPCG(826, 826))
	for range 200 {
		var sm, tm MAC
		for i := range sm {
			sm[i], tm[i] = byte(r.Uint32()), byte(r.Uint32())
		}
		sip, tip := randomAddr(r), randomAddr(r)
		a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: uint16(1 + r.IntN(2)), SourceHwAddress: sm[:], SourceProtAddress: sip[:], DstHwAddress: tm[:], DstProtAddress: tip[:]}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(sm[:]), DstMAC: net.HardwareAddr(BroadcastMAC[:]), EthernetType: layers.EthernetTypeARP}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, a); err != nil {
			t.Fatal(err)
		}
		want := frame{name: "gopacket ARP", eth: EthernetHeader{Dst: BroadcastMAC, Src: sm, EtherType: EtherTypeARP},
			arp: &ARP{Op: a.Operation, SenderMAC: sm, SenderIP: sip, TargetMAC: tm, TargetIP: tip}}
		checkWithOurs(t, &want, buf.Bytes())
	}
}
