package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "confab test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

// TestServesHTTP2OverTLS: with a certificate the server speaks HTTP/2, so
// a browser's streams share one connection instead of the six HTTP/1.1
// allows per host.
func TestServesHTTP2OverTLS(t *testing.T) {
	t.Parallel()
	cert, key := writeSelfSigned(t)
	base, _ := startServer(t, "-sqlite-path", filepath.Join(t.TempDir(), "c.db"), "-tls-cert", cert, "-tls-key", key)
	base = strings.Replace(base, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // our own test certificate
		ForceAttemptHTTP2: true,
	}}
	res, err := client.Post(base+"/v1/auth/register", "application/json", strings.NewReader(`{"username":"tls_user","password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	if res.Proto != "HTTP/2.0" || res.StatusCode != http.StatusCreated {
		t.Fatalf("register: %s %d", res.Proto, res.StatusCode)
	}
	// Several streams at once over the one HTTP/2 connection.
	for range 8 {
		req, _ := http.NewRequest("GET", base+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.Proto != "HTTP/2.0" || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %s %s", res.Proto, res.Header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() && sc.Text() != "event: ready" {
		}
		if sc.Text() != "event: ready" {
			t.Fatalf("no ready frame: %v", sc.Err())
		}
	}
}
