package server

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cairn-kv/cairn/internal/config"
)

// listenTCP listens on a TCP address with the socket options of
// --socket-reuse-port and --socket-reuse-address, which etcd sets on its
// client, peer and metrics listeners.
func listenTCP(cfg *config.Config, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if cfg.SocketReuseAddress {
				opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
			if opErr == nil && cfg.SocketReusePort {
				opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
		})
		if err != nil {
			return err
		}
		return opErr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
