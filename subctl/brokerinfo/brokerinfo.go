// Package brokerinfo reads and writes broker-info.subm, the join secret that
// `subctl deploy-broker` writes and `subctl join` reads. The file is base64 text of a
// JSON envelope that names the format and version and carries a SHA-256 digest of
// its data, so a truncated or edited file is detected and reported instead of half
// used. docs/broker-info.md documents the format.
package brokerinfo

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The file's name, format and version.
const (
	// FileName is the default name of the file.
	FileName = "broker-info.subm"
	// Format identifies our envelope.
	Format = "submariner-go/broker-info"
	// Version is the version this package writes and the highest it reads.
	Version = 1
	// PSKLength is the length of the IPsec pre-shared key in bytes.
	PSKLength = 48
	// FileMode is the file's permission: it is a secret.
	FileMode fs.FileMode = 0o600
)

// Info is what broker-info.subm carries.
type Info struct {
	// BrokerURL is the broker API server's URL (https://host:port).
	BrokerURL string `json:"brokerURL"`
	// BrokerNamespace holds the clusterset's objects on the broker.
	BrokerNamespace string `json:"brokerNamespace"`
	// CA is the PEM bundle that verifies the broker API server; empty means the
	// system's roots.
	CA string `json:"ca,omitempty"`
	// JoinerToken is the token of the broker's joiner identity, which may only
	// create cluster identities (see docs/broker-info.md).
	JoinerToken string `json:"joinerToken"`
	// JoinerTokenExpires is when JoinerToken stops working.
	JoinerTokenExpires time.Time `json:"joinerTokenExpires"`
	// IPsecPSK is the clusterset's pre-shared key, PSKLength random bytes (base64 in
	// the JSON).
	IPsecPSK []byte `json:"ipsecPSK"`
	// Globalnet are the broker's Globalnet settings.
	Globalnet Globalnet `json:"globalnet"`
	// CreatedAt is when deploy-broker wrote the file.
	CreatedAt time.Time `json:"createdAt"`
}

// Globalnet are the broker-wide Globalnet settings.
type Globalnet struct {
	// Enabled says whether the clusterset uses Globalnet.
	Enabled bool `json:"enabled"`
	// CIDRRange is the range the clusters' global CIDRs come from.
	CIDRRange string `json:"cidrRange,omitempty"`
	// ClusterSize is the default number of global IPs per cluster.
	ClusterSize int `json:"clusterSize,omitempty"`
}

// envelope is the JSON inside the base64 text.
type envelope struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	Data    json.RawMessage `json:"data"`
	SHA256  string          `json:"sha256"`
}

// Encode returns the file's content for info.
func Encode(info *Info) ([]byte, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encoding broker-info: %w", err)
	}
	sum := sha256.Sum256(data)
	env, err := json.Marshal(envelope{Format: Format, Version: Version, Data: data, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		return nil, fmt.Errorf("encoding broker-info: %w", err)
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(env)), base64.StdEncoding.EncodedLen(len(env))+1)
	base64.StdEncoding.Encode(out, env)
	return append(out, '\n'), nil
}

// DamagedError reports a file that is not intact.
type DamagedError struct {
	Name   string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged: %s; copy it again from where subctl deploy-broker wrote it, or re-run subctl deploy-broker", e.Name, e.Reason)
}

// Decode parses the content of the file called name (for messages).
func Decode(name string, content []byte) (*Info, error) {
	damaged := func(format string, args ...any) error {
		return &DamagedError{Name: name, Reason: fmt.Sprintf(format, args...)}
	}
	text := strings.Join(strings.Fields(string(content)), "")
	if text == "" {
		return nil, damaged("it is empty")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(text)
	if err != nil {
		if up, upErr := base64.URLEncoding.DecodeString(text); upErr == nil && looksUpstream(up) {
			return nil, upstreamError(name)
		}
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) && int(corrupt) >= len(text)-4 {
			return nil, damaged("its base64 text breaks off after %d characters (it was cut short)", len(text))
		}
		if errors.As(err, &corrupt) {
			return nil, damaged("it is not base64 text: character %d (%q) does not belong there", int(corrupt)+1, text[int(corrupt)])
		}
		return nil, damaged("it is not base64 text: %v", err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) && syntax.Offset >= int64(len(raw)) {
			return nil, damaged("its content ends early (it was cut short)")
		}
		return nil, damaged("its content is not the JSON subctl writes: %v", err)
	}
	if env.Format == "" && looksUpstream(raw) {
		return nil, upstreamError(name)
	}
	if env.Format != Format {
		return nil, damaged("it does not say it is a broker-info file (format %q, want %q)", env.Format, Format)
	}
	if env.Version > Version {
		return nil, fmt.Errorf("%s has format version %d, and this subctl reads up to version %d: use a newer subctl", name, env.Version, Version)
	}
	if env.Version < 1 {
		return nil, damaged("its format version %d is not valid", env.Version)
	}
	if len(env.Data) == 0 || env.SHA256 == "" {
		return nil, damaged("its data or checksum is missing")
	}
	sum := sha256.Sum256(env.Data)
	if got := hex.EncodeToString(sum[:]); got != env.SHA256 {
		return nil, damaged("its checksum does not match its data (sha256 %s, recorded %s): it was changed after subctl deploy-broker wrote it", got, env.SHA256)
	}
	info := &Info{}
	if err := json.Unmarshal(env.Data, info); err != nil {
		return nil, damaged("its data does not decode: %v", err)
	}
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("%s is not usable: %w", name, err)
	}
	return info, nil
}

func looksUpstream(raw []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &probe) != nil {
		return false
	}
	_, url := probe["brokerURL"]
	_, token := probe["ClientToken"]
	return url && token
}

func upstreamError(name string) error {
	return fmt.Errorf("%s was written by upstream Submariner's subctl, whose broker and identities differ from ours: run this subctl's deploy-broker against the broker and use the file it writes", name)
}

// Validate checks that info is complete and well-formed.
func (info *Info) Validate() error {
	var errs []error
	if err := ValidateURL(info.BrokerURL); err != nil {
		errs = append(errs, fmt.Errorf("the broker URL: %w", err))
	}
	if info.BrokerNamespace == "" {
		errs = append(errs, errors.New("the broker namespace is empty"))
	}
	if info.CA != "" {
		if err := checkPEM(info.CA); err != nil {
			errs = append(errs, fmt.Errorf("the broker CA: %w", err))
		}
	}
	if info.JoinerToken == "" {
		errs = append(errs, errors.New("the joiner token is empty"))
	}
	if len(info.IPsecPSK) != PSKLength {
		errs = append(errs, fmt.Errorf("the IPsec pre-shared key has %d bytes, want %d", len(info.IPsecPSK), PSKLength))
	}
	if info.Globalnet.Enabled {
		if _, err := submv1.ParseCIDR("the Globalnet CIDR range", info.Globalnet.CIDRRange); err != nil {
			errs = append(errs, err)
		}
		if info.Globalnet.ClusterSize <= 0 {
			errs = append(errs, fmt.Errorf("the Globalnet cluster size %d is not positive", info.Globalnet.ClusterSize))
		}
	}
	return errors.Join(errs...)
}

// ValidateURL checks that s is an https URL with a host, as a broker URL must be.
func ValidateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https:// URL such as https://broker.example.com:6443", s)
	}
	return nil
}

func checkPEM(bundle string) error {
	rest := []byte(bundle)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return fmt.Errorf("certificate %d does not parse: %w", n+1, err)
			}
			n++
		}
	}
	if n == 0 {
		return errors.New("it holds no PEM certificate")
	}
	return nil
}

// ReadFile reads and checks the file at path.
func ReadFile(path string) (*Info, error) {
	content, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: give the broker-info.subm that subctl deploy-broker wrote", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Decode(path, content)
}

// WriteFile writes info to path with mode FileMode, atomically: a reader sees the
// old file or the new one, never part of one. An existing file is first kept as
// path.<time> (returned as backup, empty when there was none).
func WriteFile(path string, info *Info, now time.Time) (backup string, err error) {
	content, err := Encode(info)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err == nil {
		backup = path + "." + strings.ReplaceAll(now.UTC().Format(time.RFC3339), ":", "_")
		if err := os.Rename(path, backup); err != nil {
			return "", fmt.Errorf("keeping the previous %s: %w", path, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return backup, fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(FileMode); err != nil {
		tmp.Close()
		return backup, fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return backup, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return backup, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return backup, fmt.Errorf("writing %s: %w", path, err)
	}
	return backup, nil
}
