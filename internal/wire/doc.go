// Package wire parses and builds the packet formats ultcp speaks: IPv4, TCP
// (with every option), UDP, ICMPv4, Ethernet II and ARP, and computes the
// Internet checksum (RFC 1071) with incremental update (RFC 1624).
//
// Every format has two faces, as in smoltcp: a view over bytes whose length
// is validated once, and a parsed value (a "header") with Parse and Encode.
// Parsing never allocates and never reads outside the slice it is given;
// encoding writes into a buffer the caller owns. Nothing here does I/O.
package wire
