// Package wire parses and builds the packet formats ultcp speaks: IPv4, TCP
// (with every option), UDP, ICMPv4, Ethernet II and ARP, and computes the
// Internet checksum (RFC 1071) with incremental update (RFC 1624).
//
// Every format has two faces, as in smoltcp: a view over bytes whose length
// is validated once (IPv4Packet, TCPSegment, UDPDatagram, ICMPv4Message,
// EthernetFrame, ARPPacket, each made by its New... function), and a parsed
// value (IPv4Header, TCPHeader, UDPHeader, ICMPv4Header, EthernetHeader,
// ARP) with Parse and Encode.
//
// Conventions:
//
//   - ParseX(b) returns the header by value with the payload; the Parse
//     method fills a header the caller owns, which is cheaper on the
//     receive path. Payloads alias b.
//   - Parsing never allocates, never reads outside the slice it is given,
//     and rejects malformed input with one of the sentinel errors in
//     errors.go, returned unwrapped so callers can count drops by reason.
//   - Parse verifies every checksum it can compute from its input (IPv4
//     header, ICMPv4). TCP and UDP checksums need the pseudo-header and are
//     verified with VerifyTCPChecksum and VerifyUDPChecksum.
//   - Encode writes into a buffer the caller owns and returns the length
//     written, or ErrBufferTooSmall; EncodedLen says how much it needs.
//     IPv4 Encode computes its header checksum; TCP, UDP and ICMPv4 Encode
//     write the Checksum field as given, and the Set...Checksum functions
//     fill it once the payload, which may live in another slice, is known.
//
// Nothing here does I/O, keeps state or reads a clock.
package wire
