package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, returning
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
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
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With --tls-cert and --tls-key the main port speaks TLS to gRPC and REST
// clients alike, and --grpc-listen adds native gRPC on grpc-go's transport.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ts := startServer(t, func(c *appConfig) {
		c.TLSCert, c.TLSKey, c.GRPCListen = certFile, keyFile, "127.0.0.1:0"
	})
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	tok := ts.token(t, "tina")
	for name, addr := range map[string]string{"main port": ts.Addr(), "grpc port": ts.GRPCAddr()} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := parleyv1.NewChatServiceClient(conn)
		resp, err := c.SendMessage(authCtx(t, tok), &parleyv1.SendMessageRequest{Room: "lobby", Body: "over TLS via " + name})
		if err != nil {
			t.Fatalf("%s: SendMessage over TLS: %v", name, err)
		}
		if resp.GetMessage().GetSeq() == 0 {
			t.Fatalf("%s: no seq", name)
		}
		// Headers over --max-header-bytes never leave a grpc-go client:
		// both transports announce the limit (net/http's with some slack).
		_, err = c.ListRooms(metadata.AppendToOutgoingContext(authCtx(t, tok), "x-pad", strings.Repeat("p", 64<<10)), &parleyv1.ListRoomsRequest{})
		if st := statusOf(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), map[string]string{"main port": "(33088 bytes)", "grpc port": "(32768 bytes)"}[name]) {
			t.Fatalf("%s: 64 KiB of headers: %v, want INTERNAL naming the server's limit", name, st)
		}
		h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "parley.v1.ChatService"})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: health %v %v", name, h, err)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+ts.Addr()+"/v1/rooms/lobby/messages", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("REST over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("REST over TLS: %s", resp.Status)
	}
}

// A stream the server ends ends with the server's status on both of
// grpc-go's server transports: its own (the --grpc-listen port), where an
// idle Join stream's only goroutine waits in Recv, and net/http's (the
// main port with TLS), where a second goroutine reads.
func TestStreamEndStatusOnBothTransports(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ts := startServer(t, func(c *appConfig) {
		c.TLSCert, c.TLSKey, c.GRPCListen = certFile, keyFile, "127.0.0.1:0"
		c.Tokens.Leeway = time.Millisecond
	})
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	streams := map[string]*joinStream{}
	for name, addr := range map[string]string{"main": ts.Addr(), "grpc": ts.GRPCAddr()} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tok, _, err := ts.Keys.Mint("lapse-on-"+name, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		js := openJoin(t, conn, tok)
		js.join("lobby", nil)
		streams[name] = js
	}
	for name, js := range streams {
		st := js.waitEnd()
		if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "expired") {
			t.Errorf("%s port: stream with an expired token ended with %v, want UNAUTHENTICATED", name, st)
		}
	}
	// The clients keep their connections and never close the streams: the
	// server's handlers return all the same (on grpc-go's transport, writing
	// the status is what ends the handler's Recv).
	waitFor(t, "the Join handlers to return", func() bool {
		return parleyGoroutines("api.(*Service).Join") == 0 && parleyGoroutines("api.(*stream).read") == 0
	})
}
