package server

import (
	"os"
	"strings"

	"golang.org/x/net/http2"
)

// http2Debug reports whether GODEBUG asks Go's HTTP/2 code for its debug
// logs (http2debug=1 or 2), as net/http and golang.org/x/net/http2 read it
// at start.
//
// Under it a member logs the HTTP/2 of its clients only, as etcd's members
// do: etcd's peers speak HTTP/1.1 to each other, and etcd's e2e tests
// (TestAuthority) take the first `http2: decoded hpack field header field
// ":authority"` line a member logs for its client's. Cairn's peers speak
// gRPC, served and dialed through grpc-go's native transport, whose framer
// is golang.org/x/net/http2's and logs under the same setting; their
// headers would come first. So under http2debug:
//
//   - x/net/http2's verbose logs are turned off (see init): the peer
//     transport and the member's own gRPC clients log no decoded headers
//     (with http2debug=2 they still log frame summaries);
//   - client gRPC on http:// and unix:// URLs is served through net/http's
//     HTTP/2 server (unencrypted HTTP/2, see serveClientH2C), as it is on
//     https:// URLs: net/http has its own copy of the setting, so clients'
//     headers are logged. Without http2debug those URLs serve gRPC on its
//     native transport, the faster path.
var http2Debug = godebugHTTP2(os.Getenv("GODEBUG"))

// godebugHTTP2 reports whether a GODEBUG value turns on Go's HTTP/2 debug
// logs, by the test net/http and x/net/http2 make.
func godebugHTTP2(v string) bool {
	return strings.Contains(v, "http2debug=1") || strings.Contains(v, "http2debug=2")
}

func init() {
	// Before any framer exists, so no goroutine reads it meanwhile.
	if http2Debug {
		http2.VerboseLogs = false
	}
}
