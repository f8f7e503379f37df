package app_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A client that sends half a request and stalls (slowloris) is cut off once
// the read timeout passes; it cannot hold the connection open.
func TestSlowClientIsCutOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{ReadTimeout: 300 * time.Millisecond})
	a := e.App
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Listener(ln) }()
	t.Cleanup(func() { _ = a.Shutdown() })

	for _, c := range []struct{ name, send string }{
		{"stalled headers", "GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthori"},
		{"stalled body", "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user"},
		{"idle keep-alive", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(c.send)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(conn) // whatever the server answers, it must then close
			if err != nil {
				t.Fatalf("connection still open after %s: %v", time.Since(start), err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("closed only after %s", d)
			}
		})
	}
}

// Headers beyond the server's read buffer are refused with 431 and a
// problem body, before any handler runs.
func TestOversizedHeadersRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.raw("GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("a", 9000) + "\r\n\r\n")
	wantProblem(t, r, 431, "headers_too_large")
}
