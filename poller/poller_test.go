//go:build linux

package poller_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/confab-chat/confab/poller"
)

// pair returns both ends of a loopback TCP connection, the server's as a
// RawConn too.
func pair(t *testing.T) (client net.Conn, server net.Conn, raw syscall.RawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	raw, err = server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return client, server, raw
}

func waitCall(t *testing.T, calls <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-calls:
	case <-time.After(5 * time.Second):
		t.Fatalf("no call for %s", what)
	}
}

// TestSetCallsOnDataAndClose: a socket's function is called when data
// arrives (and for data already there when it is added), when its peer
// closes it, never after Remove; Read does not wait; Close ends Run.
func TestSetCallsOnDataAndClose(t *testing.T) {
	set, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { set.Run(); close(ran) }()
	client, _, raw := pair(t)
	sock := poller.NewSocket()
	buf := make([]byte, 64)

	if n, err := sock.Read(raw, buf); n != 0 || !poller.WouldBlock(err) {
		t.Fatalf("read of an empty socket: %d %v", n, err)
	}
	client.Write([]byte("early"))
	time.Sleep(50 * time.Millisecond)
	calls := make(chan struct{}, 16)
	key, err := set.Add(raw, func() { calls <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	waitCall(t, calls, "data there before Add")
	if n, err := sock.Read(raw, buf); string(buf[:n]) != "early" || err != nil {
		t.Fatalf("read: %q %v", buf[:n], err)
	}
	client.Write([]byte("later"))
	waitCall(t, calls, "data")
	if n, _ := sock.Read(raw, buf); string(buf[:n]) != "later" {
		t.Fatalf("read: %q", buf[:n])
	}
	if n, err := sock.Write(raw, []byte("answer")); n != 6 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if n, _ := client.Read(buf); string(buf[:n]) != "answer" {
		t.Fatalf("client read %q", buf[:n])
	}
	client.Close()
	waitCall(t, calls, "the peer's close")
	if n, err := sock.Read(raw, buf); n != 0 || err != nil {
		t.Fatalf("read at end of stream: %d %v", n, err)
	}

	client2, _, raw2 := pair(t)
	calls2 := make(chan struct{}, 16)
	key2, err := set.Add(raw2, func() { calls2 <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	set.Remove(raw2, key2)
	client2.Write([]byte("nobody listens"))
	select {
	case <-calls2:
		t.Fatal("called after Remove")
	case <-time.After(200 * time.Millisecond):
	}
	set.Remove(raw, key)
	set.Close()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if _, err := set.Add(raw2, func() {}); err != poller.ErrClosed {
		t.Fatalf("Add after Close: %v", err)
	}
}
