// Package grpctest runs gRPC (google.golang.org/grpc) over ultcp: a client
// and a server in two processes, the client's connections made through
// grpc.WithContextDialer with an ultcp Dialer, the server serving on an
// ultcp Listener. It is a module of its own so that the core module never
// depends on gRPC; it has tests only and must never be imported.
package grpctest
