package brokerinfo_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/submariner-go/submariner/subctl/brokerinfo"
)

func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func sample(t *testing.T) *brokerinfo.Info {
	t.Helper()
	return &brokerinfo.Info{
		BrokerURL:          "https://192.0.2.1:6443",
		BrokerNamespace:    "submariner-k8s-broker",
		CA:                 testCA(t),
		JoinerToken:        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqb2luZXIifQ.c2ln",
		JoinerTokenExpires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		IPsecPSK:           bytes.Repeat([]byte{0xAB}, brokerinfo.PSKLength),
		Globalnet:          brokerinfo.Globalnet{Enabled: true, CIDRRange: "242.0.0.0/8", ClusterSize: 65536},
		CreatedAt:          time.Date(2029, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestRoundTrip(t *testing.T) {
	want := sample(t)
	content, err := brokerinfo.Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := brokerinfo.Decode("broker-info.subm", content)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded info (-want +got):\n%s", diff)
	}
	// Wrapped lines (as mail or a terminal may wrap them) read the same.
	var wrapped strings.Builder
	text := strings.TrimSpace(string(content))
	for i := 0; i < len(text); i += 76 {
		wrapped.WriteString(text[i:min(i+76, len(text))] + "\n")
	}
	if got, err := brokerinfo.Decode("wrapped", []byte(wrapped.String())); err != nil || !cmp.Equal(want, got) {
		t.Errorf("wrapped file: err %v, diff %s", err, cmp.Diff(want, got))
	}
}

// TestTruncated cuts the file at every length: each must be refused as damaged,
// never accepted and never a panic.
func TestTruncated(t *testing.T) {
	content, err := brokerinfo.Encode(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(string(content))
	for n := 0; n < len(text); n++ {
		_, err := brokerinfo.Decode("broker-info.subm", []byte(text[:n]))
		var damaged *brokerinfo.DamagedError
		if !errors.As(err, &damaged) {
			t.Fatalf("cut to %d of %d characters: got %v, want a DamagedError", n, len(text), err)
		}
		if !strings.HasPrefix(err.Error(), "broker-info.subm is damaged: ") {
			t.Fatalf("cut to %d: message %q does not start with the file's name and \"is damaged\"", n, err)
		}
	}
}

// TestCorrupted changes every character of the file in turn: each change must be
// refused (the digest, the base64 alphabet and the JSON catch every one).
func TestCorrupted(t *testing.T) {
	content, err := brokerinfo.Encode(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	text := []byte(strings.TrimSpace(string(content)))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	damagedCount := 0
	for i := range text {
		changed := append([]byte(nil), text...)
		// Replace with the next letter of the alphabet, so the text stays base64.
		changed[i] = alphabet[(strings.IndexByte(alphabet, text[i])+1)%len(alphabet)]
		if text[i] == '=' {
			changed[i] = 'A'
		}
		_, err := brokerinfo.Decode("broker-info.subm", changed)
		if err == nil {
			t.Fatalf("changing character %d (%q to %q) went unnoticed", i, text[i], changed[i])
		}
		var damaged *brokerinfo.DamagedError
		if errors.As(err, &damaged) {
			damagedCount++
		}
	}
	// A few positions land in the version number, which reads as "newer format"
	// rather than "damaged"; every other change must say the file is damaged.
	if damagedCount < len(text)-8 {
		t.Errorf("only %d of %d changes were reported as damage", damagedCount, len(text))
	}
}

func TestDecodeErrors(t *testing.T) {
	b64 := func(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"empty", []byte("  \n"), "broker-info.subm is damaged: it is empty"},
		{"not base64", []byte("not*base64"), "broker-info.subm is damaged: it is not base64 text"},
		{"not json", b64("hello"), "broker-info.subm is damaged: its content is not the JSON subctl writes"},
		{"upstream", []byte(base64.URLEncoding.EncodeToString([]byte(`{"brokerURL":"https://x","ClientToken":{}}`))),
			"broker-info.subm was written by upstream Submariner's subctl"},
		{"other format", b64(`{"format":"something-else","version":1}`), "it does not say it is a broker-info file"},
		{"newer", b64(`{"format":"submariner-go/broker-info","version":2,"data":{},"sha256":"00"}`),
			"broker-info.subm has format version 2, and this subctl reads up to version 1: use a newer subctl"},
		{"no checksum", b64(`{"format":"submariner-go/broker-info","version":1,"data":{}}`), "its data or checksum is missing"},
		{"bad checksum", b64(`{"format":"submariner-go/broker-info","version":1,"data":{},"sha256":"00"}`), "its checksum does not match its data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := brokerinfo.Decode("broker-info.subm", tc.content)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*brokerinfo.Info)
		want   string
	}{
		{"http URL", func(i *brokerinfo.Info) { i.BrokerURL = "http://192.0.2.1" }, `the broker URL: "http://192.0.2.1" is not an https:// URL`},
		{"no token", func(i *brokerinfo.Info) { i.JoinerToken = "" }, "the joiner token is empty"},
		{"short key", func(i *brokerinfo.Info) { i.IPsecPSK = []byte("short") }, "the IPsec pre-shared key has 5 bytes, want 48"},
		{"bad CA", func(i *brokerinfo.Info) { i.CA = "not PEM" }, "the broker CA: it holds no PEM certificate"},
		{"bad globalnet range", func(i *brokerinfo.Info) { i.Globalnet.CIDRRange = "242.0.0.1/8" }, `has host bits set: did you mean 242.0.0.0/8?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := sample(t)
			tc.modify(info)
			_, err := brokerinfo.Encode(info)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, brokerinfo.FileName)
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	first := sample(t)
	backup, err := brokerinfo.WriteFile(path, first, now)
	if err != nil || backup != "" {
		t.Fatalf("first write: backup %q, err %v", backup, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != brokerinfo.FileMode {
		t.Errorf("file mode %v, want %v", st.Mode().Perm(), brokerinfo.FileMode)
	}
	second := sample(t)
	second.JoinerToken = "another"
	backup, err = brokerinfo.WriteFile(path, second, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := path + ".2030-05-06T07_08_09Z"; backup != want {
		t.Errorf("backup %q, want %q", backup, want)
	}
	if got, err := brokerinfo.ReadFile(backup); err != nil || got.JoinerToken != first.JoinerToken {
		t.Errorf("backup holds token %v (err %v), want the first file's", got, err)
	}
	if got, err := brokerinfo.ReadFile(path); err != nil || got.JoinerToken != "another" {
		t.Errorf("file holds %v (err %v), want the second info", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d files, want the file and its backup (no temporary files left)", len(entries))
	}
	if _, err := brokerinfo.ReadFile(filepath.Join(dir, "missing.subm")); err == nil || !strings.Contains(err.Error(), "does not exist: give the broker-info.subm that subctl deploy-broker wrote") {
		t.Errorf("missing file: %v", err)
	}
}
