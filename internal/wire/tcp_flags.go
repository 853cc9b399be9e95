package wire

// String names the set bits in wire order, e.g. "SYN|ACK", for test
// failures and logs; "0" when none is set. It allocates: not for the data
// path.
func (f TCPFlags) String() string {
	if f == 0 {
		return "0"
	}
	names := [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	s := ""
	for i, n := range names {
		if f&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}
